#!/usr/bin/python3
"""The dashboard in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromedriver (nothing is downloaded).

    dashboard.py URL GLINT DATA_DIR DEPLOYER_TOKEN VIEWER_TOKEN SCREENSHOT_DIR

Checks, in order, printing one line per check and exiting non-zero at the
first that fails:
1. the overview shows "3/3 healthy";
2. on the open service page, killing an instance shows its replacement
   within two seconds, without a reload;
3. a rollback from the overview (confirmed) creates a version, and the
   open page follows it to convergence;
4. a viewer sees no rollback button, and a POST forged from the viewer's
   page is refused (403).
Screenshots of the overview and a service page go to SCREENSHOT_DIR.
"""

import json
import os
import signal
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

URL, GLINT, DATA, DEPLOYER, VIEWER, SHOTS = sys.argv[1:7]


def fail(msg):
    print(f"dashboard: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print(f"dashboard: ok: {msg}", flush=True)


def status():
    out = subprocess.run([GLINT, "status", "-o", "json"], env={**os.environ, "GLINT_DATA_DIR": DATA},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def browser(width, height):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def sign_in(d, token):
    d.get(URL + "/")
    box = d.find_element(By.NAME, "token")
    box.send_keys(token)
    box.submit()
    WebDriverWait(d, 10).until(lambda d: "Overview" in d.title)


def attrs(d, selector, attr):
    """Read in one script: the live fragment may be swapped in between two
    WebDriver calls (a stale element)."""
    return d.execute_script(
        "var a = arguments[1]; return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function(e) { return a ? e.getAttribute(a) : e.textContent; });", selector, attr)


def health_text(d):
    return attrs(d, "[data-health]", None)


def live_text(d):
    return d.execute_script("var e = document.getElementById('live'); return e ? e.textContent : '';")


d = browser(1280, 900)
try:
    sign_in(d, DEPLOYER)
    try:
        WebDriverWait(d, 20).until(lambda d: "3/3 healthy" in " ".join(health_text(d)))
    except Exception:
        fail(f"the overview shows {health_text(d)}, not 3/3 healthy")
    ok("the overview shows 3/3 healthy")
    d.save_screenshot(os.path.join(SHOTS, "dashboard-overview.png"))

    d.get(URL + "/services/web")
    rows = lambda: attrs(d, "[data-instance]", "data-instance")
    WebDriverWait(d, 10).until(lambda d: len(rows()) == 3)
    before = set(rows())
    d.execute_script("window.__loaded = 'same page';")
    s = status()
    victim = next(i for svc in s["services"] for i in svc["instances"] if i["health"] == "healthy")
    pid = int(victim["handle"].split()[1])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        WebDriverWait(d, 2, poll_frequency=0.05).until(
            lambda d: victim["id"] not in rows() and len(set(rows()) - before) >= 1)
    except Exception:
        fail(f"2s after killing {victim['id']} the page shows {rows()} (before: {sorted(before)})")
    took = time.monotonic() - killed
    if d.execute_script("return window.__loaded;") != "same page":
        fail("the page was reloaded")
    ok(f"the replacement of {victim['id']} appeared on the open page {took:.2f}s after the kill, without a reload")
    WebDriverWait(d, 20).until(lambda d: "3/3 healthy" in " ".join(health_text(d)))
    d.save_screenshot(os.path.join(SHOTS, "dashboard-service.png"))

    d.get(URL + "/")
    current = int(d.execute_script("return document.getElementById('version').textContent;"))
    for attempt in range(5):
        try:
            WebDriverWait(d, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-rollback='1']")).click()
            break
        except StaleElementReferenceException:
            continue  # the live fragment was swapped in between
    else:
        fail("the rollback button kept being replaced before it could be clicked")
    WebDriverWait(d, 5).until(lambda d: d.switch_to.alert)
    d.switch_to.alert.accept()
    WebDriverWait(d, 10).until(lambda d: d.execute_script(
        "var e = document.getElementById('version'); return e ? e.textContent : '';") == str(current + 1))
    ok(f"the rollback from the page created version {current + 1}")
    d.execute_script("window.__loaded = 'after rollback';")
    try:
        WebDriverWait(d, 60, poll_frequency=0.2).until(
            lambda d: "3/3 healthy" in " ".join(health_text(d))
            and any("converged" in t for t in d.execute_script(
                "return Array.from(document.querySelectorAll(\"[data-version='\" + arguments[0] + \"']\"))"
                ".map(function(e) { return e.textContent; });", str(current + 1))))
    except Exception:
        fail(f"the page did not follow version {current + 1} to convergence: {live_text(d)}")
    if d.execute_script("return window.__loaded;") != "after rollback":
        fail("the page was reloaded while following the rollout")
    ok(f"the open page followed version {current + 1} to convergence")
    csrf_action = (attrs(d, "form[action^='/ui/rollback']", "action") or [None])[0]
    if not csrf_action:
        fail("the deployer's page has no rollback form any more")
finally:
    d.quit()

v = browser(390, 844)  # a phone
try:
    sign_in(v, VIEWER)
    WebDriverWait(v, 10).until(lambda d: "healthy" in " ".join(health_text(d)))
    if attrs(v, "[data-rollback]", "data-rollback"):
        fail("a viewer sees a rollback button")
    v.get(URL + "/versions")
    if any("Roll back" in t for t in attrs(v, "button", None)):
        fail("a viewer sees a rollback button on the versions page")
    ok("a viewer sees no rollback button")
    v.get(URL + "/")
    v.save_screenshot(os.path.join(SHOTS, "dashboard-phone-viewer.png"))
    # A POST forged from the viewer's page: the deployer's form, the
    # viewer's cookie.
    code = v.execute_async_script(
        "var done = arguments[1]; fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'to=1'})"
        ".then(function(r) { done(r.status); }, function(e) { done(String(e)); });", csrf_action)
    if code != 403:
        fail(f"a viewer's forged rollback POST was answered {code}")
    ok("a viewer's forged POST is refused (403)")
finally:
    v.quit()
print("dashboard: 4 passed, 0 failed")
