#!/usr/bin/perl
# logtags.pl: every log tag (PPLOGNO, CSLOGNO, CYLOGNO, MGLOGNO) is used
# once in the code and explained in the docs, so that an operator who
# greps a tag from the error log finds one line of code and its meaning.
#
#   * a tag number used by two log calls fails (numbers are never reused);
#   * a tag of the code that its module's page (or the API or manifest
#     page) does not name fails;
#   * a tag that a module's page (docs/mod_*.md) names but no code uses
#     fails (the docs describe a message that no longer exists).
#
# Prints "ok"/"not ok" lines and "N passed, M failed"; exits non-zero on
# any failure.  Run from the top of the tree or with $srcdir set.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Lint;

my $top = top();

my (%uses, %where);
for my $f (sort(glob("$top/mod_*/*.[ch]"), glob("$top/lib/*.[ch]"))) {
    my $n = 0;
    for my $line (split /\n/, slurp($f)) {
        $n++;
        next if $line =~ /#\s*define\s+\w+LOGNO/;
        while ($line =~ /\b(PP|CS|CY|MG)LOGNO\((\d{5})\)/g) {
            my $tag = "$1$2";
            $uses{$tag}++;
            (my $rel = $f) =~ s{^\Q$top\E/}{};
            push @{$where{$tag}}, "$rel:$n";
        }
    }
}

# The pages that document each module's tags (not benchmarks.md, say,
# which may quote a tag in passing).
my %pages = (
    PP => [qw(mod_proxy_protocol.md)],
    CS => [qw(mod_certservice.md certservice-api.md)],
    CY => [qw(mod_certsync.md manifest.md)],
    MG => [qw(mod_macro_gen.md manifest.md)],
);
my (%documented, %module_doc);
for my $prefix (sort keys %pages) {
    for my $page (@{$pages{$prefix}}) {
        my $f = "$top/docs/$page";
        next unless -f $f;
        my $text = slurp($f);
        while ($text =~ /\b$prefix(\d{5})\b/g) {
            my $tag = "$prefix$1";
            $documented{$tag} = 1;
            $module_doc{$tag} = $f if $page =~ /^mod_/;
        }
    }
}

ok(scalar(keys %uses) > 0, "log tags found in the code");
for my $tag (sort keys %uses) {
    ok($uses{$tag} == 1, "$tag used once"
       . ($uses{$tag} > 1 ? " (used at " . join(', ', @{$where{$tag}}) . ")"
                          : ""));
    ok($documented{$tag}, "$tag named in its module's docs ($where{$tag}[0])");
}
for my $tag (sort keys %module_doc) {
    (my $rel = $module_doc{$tag}) =~ s{^\Q$top\E/}{};
    ok($uses{$tag}, "$tag of $rel used in the code");
}

done();
