"""Console benchmarks in headless Chromium against a running twind (release build):

- first load of the console (navigation start to the login form shown), over loopback;
- the overview with every device live: frame intervals over a window, counted by
  requestAnimationFrame in the page (a frame over 50 ms is a dropped frame at 20+ fps);
- a reading pushed through Ingest until it shows on the overview (5 rounds);
- a 30-day chart of one sensor, from the GetHistory request to drawn (the page measures it).

usage: python3 Benchmarks/console_bench.py BASE_URL [SECONDS]   (the admin password on stdin)
Start twind first, e.g.:
  twind --devices 1000 --interval 1s --http-listen 127.0.0.1:8947 --data-dir /tmp/bench
Prints one JSON object.
"""
import json
import statistics
import struct
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base = sys.argv[1].rstrip("/")
window = float(sys.argv[2]) if len(sys.argv) > 2 else 10
password = sys.stdin.readline().strip()


def call(method, body, token=None, raw=None, content_type="application/json"):
    request = urllib.request.Request(f"{base}/{method}", data=raw if raw is not None else json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": content_type})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=300) as response:
        data = response.read()
        return json.loads(data) if content_type == "application/json" else data


def envelope(message):
    """One Connect streaming frame (flags 0, big-endian length) holding a JSON message."""
    payload = json.dumps(message).encode()
    return struct.pack(">BI", 0, len(payload)) + payload


token = call("twin.v1.AuthService/Login", {"username": "admin", "password": password})["accessToken"]
try:
    call("twin.v1.AuthService/CreateUser", {"username": "bench", "password": "bench-password-123", "role": "ROLE_VIEWER"}, token)
except urllib.error.HTTPError as error:
    if error.code != 409:  # already there from an earlier run
        raise

# 30 days of one sensor at 1 min (43,200 readings), imported as history.
call("twin.v1.TwinService/UpsertDevice", {"device": {"id": "bench-chart", "type": "press", "sensors": [{"name": "force", "unit": "kN", "nominalMin": 0, "nominalMax": 800, "alarmHigh": 950}]}}, token)
now = int(time.time())
start = now - 30 * 86400
batches = b""
for b in range(0, 43_200, 10_000):
    readings = [{"deviceId": "bench-chart", "sensor": "force", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 60 * i)),
                 "value": 400 + (i % 977) * 0.1} for i in range(b, min(b + 10_000, 43_200))]
    batches += envelope({"readings": readings, "importHistory": True})
call("twin.v1.TwinService/Ingest", None, token, raw=batches, content_type="application/connect+json")

options = webdriver.ChromeOptions()
for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(argument)
options.binary_location = "/usr/bin/chromium"
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(browser, 120)
result = {}
try:
    loads = []
    for _ in range(5):
        browser.get(base + "/")
        wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
        loads.append(browser.execute_script("const t = performance.getEntriesByType('navigation')[0]; return performance.now() - t.startTime"))
    result["first_load_ms"] = [round(min(loads)), round(max(loads))]

    browser.find_element(By.ID, "login-username").send_keys("bench")
    browser.find_element(By.ID, "login-password").send_keys("bench-password-123")
    browser.find_element(By.ID, "login-submit").click()
    wait.until(lambda b: b.execute_script("return document.body.dataset.synced") == "yes")
    result["devices_on_overview"] = len(browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr"))
    lives = []
    # Polled every 10 ms (the default 0.5 s would round a 20 ms update up to half a second).
    fast = WebDriverWait(browser, 20, poll_frequency=0.01)
    for round_ in range(5):
        value = 777.5 + round_
        reading = {"deviceId": "bench-chart", "sensor": "force", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "value": value}
        sent = time.monotonic()
        call("twin.v1.TwinService/Ingest", None, token, raw=envelope({"readings": [reading]}), content_type="application/connect+json")
        # The row's text in the DOM: WebDriver's visible-text ("element.text") first forces a
        # layout of the rows the browser skips off screen, which once took ~1.3 s by itself.
        fast.until(lambda b: str(value) in b.execute_script(
            "return document.querySelector('tr[data-device=\"bench-chart\"] .readings').textContent"))
        lives.append((time.monotonic() - sent) * 1000)
        time.sleep(1.1)  # the next reading a second later, as a live device sends them
    result["live_update_ms"] = [round(min(lives)), round(max(lives))]
    result["live_rounds_ms"] = [round(x) for x in lives]
    frames = browser.execute_async_script("""
        const done = arguments[arguments.length - 1], until = performance.now() + arguments[0] * 1000, gaps = [];
        let last = performance.now();
        function tick(t) { gaps.push(t - last); last = t; if (t < until) requestAnimationFrame(tick); else done(gaps); }
        requestAnimationFrame(tick);
    """, window)
    frames = sorted(frames[1:])
    result["overview_frames"] = {
        "count": len(frames), "median_ms": round(statistics.median(frames), 1),
        "p99_ms": round(frames[int(len(frames) * 0.99) - 1], 1), "max_ms": round(frames[-1], 1),
        "over_20ms": sum(1 for f in frames if f > 20), "over_50ms": sum(1 for f in frames if f > 50)}

    charts = []
    for _ in range(5):
        browser.get(base + "/#/overview")
        browser.execute_script("document.body.dataset.chartMs = ''")
        browser.get(base + "/#/device/bench-chart")
        select = wait.until(EC.presence_of_element_located((By.ID, "device-range")))
        wait.until(lambda b: b.execute_script("return document.body.dataset.chartMs") not in (None, ""))
        browser.execute_script("document.body.dataset.chartMs = ''")
        browser.execute_script("arguments[0].value = '2592000'; arguments[0].dispatchEvent(new Event('change'))", select)
        wait.until(lambda b: b.execute_script("return document.body.dataset.chartMs") not in (None, ""))
        charts.append(int(browser.execute_script("return document.body.dataset.chartMs")))
    result["chart_30d_ms"] = [min(charts), max(charts)]
finally:
    browser.quit()
print(json.dumps(result))
