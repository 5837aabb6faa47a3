#!/usr/bin/python3
"""t/dashboard/browser.py URL EXPECT.json SHOTDIR PROFILE: CertService's
dashboard in headless Chromium, for t/dashboard/e2e.sh.

The browser presents the admin client certificate (the NSS database in
$HOME/.pki/nssdb, chosen by policy).  Checks, each printed as TAP:
the page loads with no console error (a Content-Security-Policy violation
is one), the summary and the hosts and CA tables are filled, clicking the
state filter "error" leaves exactly the domains in error (as GET
/v1/domains?state=error lists them), "active" the active ones, the search
box and the expiry filter narrow the table as the API does, a click on a
domain shows the hosts that serve it.  Screenshots go to SHOTDIR.
Exit status: the number of failed checks (0: all passed).
"""
import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

url, expect_file, shots, profile = sys.argv[1:5]
with open(expect_file) as f:
    expect = json.load(f)

n = failed = 0


def check(cond, desc, detail=None):
    global n, failed
    n += 1
    if cond:
        print("ok %d - %s" % (n, desc))
    else:
        failed += 1
        print("not ok %d - %s" % (n, desc))
        if detail is not None:
            for line in str(detail).splitlines():
                print("# " + line)
    sys.stdout.flush()
    return cond


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
          "--disable-dev-shm-usage", "--window-size=1280,1600",
          "--user-data-dir=" + profile, "--no-first-run",
          "--disable-extensions", "--disable-background-networking"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                       options=opts)
drv.set_page_load_timeout(30)
wait = WebDriverWait(drv, 15)


def domains_shown():
    """The names in the domains table (none for the "no match" row)."""
    return [r.get_attribute("data-domain") for r in
            drv.find_elements(By.CSS_SELECTOR, "#domains tbody tr.domain")]


def loads():
    return int(drv.find_element(By.TAG_NAME, "body")
               .get_attribute("data-domains-loaded") or 0)


def after(action, what):
    """Run action, then wait until the table was loaded again."""
    before = loads()
    action()
    try:
        wait.until(lambda d: loads() > before)
        return True
    except TimeoutException:
        return check(False, "the table reloads after " + what)


def state_button(state):
    return drv.find_element(
        By.CSS_SELECTOR, '#state-filter button[data-state="%s"]' % state)


def shot(name):
    """The whole page, not only the window."""
    h = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(1280, min(max(h + 140, 900), 4000))
    drv.save_screenshot(shots + "/" + name)
    drv.set_window_size(1280, 1600)


def same(got, want, desc):
    check(sorted(got) == sorted(want), desc,
          "got:  %s\nwant: %s" % (sorted(got), sorted(want)))


try:
    drv.get(url)
    try:
        wait.until(lambda d: loads() > 0 and d.find_elements(
            By.CSS_SELECTOR, "#hosts tbody tr"))
        loaded = True
    except TimeoutException:
        loaded = False
    check(loaded, "the dashboard loads (client certificate accepted)",
          drv.page_source[:500])
    check(drv.find_element(By.ID, "error").get_attribute("hidden")
          is not None, "no error shown",
          drv.find_element(By.ID, "error").text)
    time.sleep(0.5)             # the overview's answer, if later
    same(domains_shown(), expect["all"], "every domain listed, unfiltered")
    hosts = [r.find_elements(By.TAG_NAME, "td")[0].text for r in
             drv.find_elements(By.CSS_SELECTOR, "#hosts tbody tr")]
    same(hosts, ["proxy1", "proxy2", "proxy3"], "the three hosts listed")
    lag = {r.find_elements(By.TAG_NAME, "td")[0].text:
           r.find_elements(By.TAG_NAME, "td")[4].text
           for r in drv.find_elements(By.CSS_SELECTOR, "#hosts tbody tr")}
    check(lag.get("proxy3") == "2" and lag.get("proxy1") == "0",
          "proxy3 two changes behind, proxy1 none", lag)
    cas = {r.find_elements(By.TAG_NAME, "td")[1].text:
           r.find_elements(By.TAG_NAME, "td")[2].text
           for r in drv.find_elements(By.CSS_SELECTOR, "#cas tbody tr")}
    check(cas == {"default": "down", "backup": "down"},
          "CA health: both CAs down", cas)
    check(len(drv.find_elements(By.CSS_SELECTOR, "#orders tbody tr"))
          >= 2, "orders counted per CA")
    summary = drv.find_element(By.ID, "sum-domains").text
    check("error\n%d" % len(expect["error"]) in summary,
          "summary: domains in error", summary)
    shot("dashboard.png")

    # The filters.
    after(lambda: state_button("error").click(), "the error filter")
    same(domains_shown(), expect["error"],
         "filter error: exactly the domains in error")
    states = [r.find_elements(By.TAG_NAME, "td")[1].text for r in
              drv.find_elements(By.CSS_SELECTOR, "#domains tbody tr.domain")]
    check(states and set(states) == {"error"}, "... each row says error",
          states)
    errors = [r.find_elements(By.TAG_NAME, "td")[5].text for r in
              drv.find_elements(By.CSS_SELECTOR, "#domains tbody tr.domain")]
    check(all("CA default" in e and "CA backup" in e for e in errors),
          "... with the last error naming both CAs", errors)
    check("on" in state_button("error").get_attribute("class"),
          "... the button shows it is on")
    shot("dashboard-errors.png")

    after(lambda: state_button("active").click(), "the active filter")
    same(domains_shown(), expect["active"], "filter active")

    after(lambda: state_button("").click(), "all")
    after(lambda: drv.find_element(By.ID, "q").send_keys("shop"),
          "the search")
    same(domains_shown(), expect["shop"], "search 'shop'")
    drv.find_element(By.ID, "q").clear()
    after(lambda: drv.find_element(By.ID, "q").send_keys(" "), "clearing")

    after(lambda: Select(drv.find_element(By.ID, "expiring"))
          .select_by_value("7"), "the expiry filter")
    same(domains_shown(), expect["exp7"], "expiring within 7 days")
    after(lambda: Select(drv.find_element(By.ID, "expiring"))
          .select_by_value("14"), "the expiry filter")
    same(domains_shown(), expect["exp14"], "expiring within 14 days")
    cells = [r.find_elements(By.TAG_NAME, "td")[4] for r in
             drv.find_elements(By.CSS_SELECTOR, "#domains tbody tr.domain")]
    check(any("late" in c.get_attribute("class") for c in cells),
          "... the one under 7 days is marked")

    # A domain's hosts.
    drv.find_element(By.CSS_SELECTOR,
                     '#domains tbody tr[data-domain="shop.example"]').click()
    try:
        wait.until(lambda d: d.find_element(By.ID, "detail").is_displayed()
                   and d.find_elements(By.CSS_SELECTOR,
                                       "#detail-hosts tbody tr td"))
        rows = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
                for r in drv.find_elements(By.CSS_SELECTOR,
                                           "#detail-hosts tbody tr")]
    except TimeoutException:
        rows = []
    check(len(rows) == 3 and all(r[2] and r[2] != "none" for r in rows[:2]),
          "a click on shop.example: the serial each host serves", rows)
    shot("dashboard-domain.png")

    # Nothing blocked, nothing thrown.
    logs = [e for e in drv.get_log("browser")
            if e.get("level") in ("SEVERE", "WARNING")]
    check(not logs, "no console error or warning (CSP violations included)",
          "\n".join(e.get("message", "") for e in logs))
finally:
    drv.quit()

print("1..%d" % n)
sys.exit(min(failed, 100))
