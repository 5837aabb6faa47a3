# bench/fill_stubs.py STORE N: completes a store bench/mkstore was filling
# (bench/sync1m.sh) to the N domains dI.scale.test: the ones mkstore
# finished keep their versions; the rest get a stub version (a directory
# and the current link, no files: what the sync daemon reads of a domain);
# then the manifest (v2, sorted, as mod_certsync writes it) and cursor 0.
import os, sys
store, n = sys.argv[1], int(sys.argv[2])
live = os.path.join(store, "live")
stubs = real = 0
names = []
for i in range(1, n + 1):
    d = "d%d.scale.test" % i
    names.append(d)
    ddir = os.path.join(live, d)
    cur = os.path.join(ddir, "current")
    if os.path.islink(cur) and os.path.exists(os.path.join(cur, "fullchain.pem")):
        real += 1
        continue
    os.makedirs(os.path.join(ddir, "1"), exist_ok=True)
    if os.path.lexists(cur):
        os.unlink(cur)
    os.symlink("1", cur)
    stubs += 1
names.sort()
tmp = os.path.join(store, ".tmp-manifest")
with open(tmp, "w") as f:
    f.write("# certsync manifest v2\n")
    for d in names:
        f.write("%s live/%s/current\n" % (d, d))
os.chmod(tmp, 0o644)
os.rename(tmp, os.path.join(store, "manifest"))
with open(os.path.join(store, "cursor"), "w") as f:
    f.write("0\n")
print("real %d stubs %d" % (real, stubs))
