"""Drives twind's console in headless Chromium (Debian's chromium + chromedriver, selenium) as
operators do, and calls its HTTP bridge the way curl does. Prints one JSON object of findings;
the Swift end-to-end test (ConsoleTests) asserts on them.

usage: console_check.py BASE_URL SCREENSHOT_DIR  (the admin password on stdin, never in argv)
"""
import json
import os
import subprocess
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

base, shots = sys.argv[1].rstrip("/"), sys.argv[2]
admin_password = sys.stdin.readline().strip()
result = {}


def call(method, body, token=None, content_type="application/json", raw=None):
    """One Connect call; returns (HTTP status, parsed JSON or raw bytes, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/{method}", data=data, method="POST", headers={"Content-Type": content_type})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            payload = response.read()
            return response.status, (json.loads(payload) if content_type == "application/json" else payload), response.headers
    except urllib.error.HTTPError as error:
        payload = error.read()
        return error.code, json.loads(payload or b"{}"), error.headers


def envelope(message, flags=0):
    payload = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(payload)) + payload


def envelopes(data):
    out, i = [], 0
    while i + 5 <= len(data):
        flags, length = struct.unpack(">BI", data[i:i + 5])
        out.append((flags, json.loads(data[i + 5:i + 5 + length])))
        i += 5 + length
    return out


# ---- the bridge, as curl would use it ----
status, login, _ = call("twin.v1.AuthService/Login", {"username": "admin", "password": admin_password})
admin = login["accessToken"]
for name, role in [("olga", "ROLE_OPERATOR"), ("victor", "ROLE_VIEWER")]:
    call("twin.v1.AuthService/CreateUser", {"username": name, "password": f"{name}-password-123", "role": role}, admin)
device = {"id": "console-press", "name": "Console press", "type": "press", "site": "north", "line": "l1",
          "sensors": [{"name": "force", "unit": "kN", "nominalMin": 0, "nominalMax": 800, "alarmHigh": 950}]}
status, _, _ = call("twin.v1.TwinService/UpsertDevice", {"device": device}, admin)
result["upsert_status"] = status
now = time.time()


def readings(values, start):
    return {"readings": [{"deviceId": "console-press", "sensor": "force",
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i)) + "Z", "value": v}
                         for i, v in enumerate(values)]}


# An hour of history for the chart, sent as a client stream (two enveloped messages).
history = [400 + (i % 50) for i in range(720)]
status, raw, headers = call("twin.v1.TwinService/Ingest", None, admin, "application/connect+json",
                            envelope(readings(history[:360], now - 3600)) + envelope(readings(history[360:], now - 3600 + 360)))
frames = envelopes(raw)
result["ingest_stream"] = {"status": status, "accepted": frames[0][1].get("acceptedReadings"), "end": frames[-1][0]}
status, body, _ = call("twin.v1.TwinService/GetDevice", {"deviceId": "missing-device"}, admin)
result["unary_error"] = {"status": status, "code": body.get("code"),
                         "reason": next((d["debug"]["reason"] for d in body.get("details", []) if d["type"] == "google.rpc.ErrorInfo"), None)}
request = urllib.request.Request(f"{base}/twin.v1.TwinService/StreamUpdates", data=envelope({"deviceIds": ["console-press"]}),
                                 method="POST", headers={"Content-Type": "application/connect+json", "Authorization": f"Bearer {admin}"})
with urllib.request.urlopen(request, timeout=20) as response:
    flags, length = struct.unpack(">BI", response.read(5))
    first = json.loads(response.read(length))
result["stream_first"] = {"flags": flags, "device": first.get("devices", {}).get("updates", [{}])[0].get("snapshot", {}).get("deviceId")}

# A body over the limit is refused before it is read (413), and twind keeps serving.
# (curl, which reads the answer while it sends; Python's client would only see the closed pipe)
with open(f"{shots}/oversize.json", "wb") as f:
    f.write(b" " * (17 * 1024 * 1024))
out = subprocess.run(["curl", "-s", "-m", "20", "-w", "\\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                      "--data-binary", f"@{shots}/oversize.json", f"{base}/twin.v1.TwinService/ListDevices"], capture_output=True, text=True).stdout
os.unlink(f"{shots}/oversize.json")
body_text, _, code = out.rpartition("\n")
result["oversize"] = {"status": int(code or 0), "code": json.loads(body_text or "{}").get("code")}

# ---- the browser ----
options = webdriver.ChromeOptions()
for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(argument)
options.binary_location = "/usr/bin/chromium"
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(browser, 20)


def shot(name):
    browser.save_screenshot(f"{shots}/{name}.png")


def log_in(user, password):
    browser.get(base + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    browser.find_element(By.ID, "login-username").send_keys(user)
    browser.find_element(By.ID, "login-password").send_keys(password)
    browser.find_element(By.ID, "login-submit").click()


try:
    began = time.monotonic()
    browser.get(base + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    result["first_load_ms"] = round((time.monotonic() - began) * 1000)
    shot("1-login")
    result["csp"] = browser.execute_script("return document.querySelectorAll('script:not([src])').length") == 0

    log_in("olga", "olga-password-123")
    wait.until(lambda b: b.execute_script("return document.body.dataset.synced") == "yes")
    rows = browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
    _, listed, _ = call("twin.v1.TwinService/ListDevices", {"pageSize": 1000}, admin)
    result["overview"] = {"rows": len(rows), "devices": len(listed["devices"])}
    # The refresh token is not readable by the page.
    result["cookie_hidden"] = "twin_refresh" not in browser.execute_script("return document.cookie")
    result["storage_empty"] = browser.execute_script("return localStorage.length + sessionStorage.length") == 0
    shot("2-overview")

    # A reading pushed through Ingest shows on the overview (how fast: Benchmarks/console_bench.py).
    sent = time.monotonic()
    call("twin.v1.TwinService/Ingest", None, admin, "application/connect+json", envelope(readings([777.5], time.time())))
    wait.until(lambda b: "777.5" in b.find_element(By.CSS_SELECTOR, 'tr[data-device="console-press"] .readings').text)
    result["live_update_ms"] = round((time.monotonic() - sent) * 1000)

    # Device page: the chart draws the hour of history.
    browser.get(base + "/#/device/console-press")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '.chart[data-sensor="force"] polyline')))
    chart = browser.find_element(By.CSS_SELECTOR, '.chart[data-sensor="force"]')
    result["chart"] = {"points": int(chart.get_attribute("data-points")), "ms": int(browser.execute_script("return document.body.dataset.chartMs") or -1)}
    # Zoom in with the wheel: the chart is fetched again for a narrower window.
    span = browser.execute_script("const c = document.getElementById('charts'); return c.dataset.to - c.dataset.from")
    browser.execute_script("""const s = document.querySelector('.chart[data-sensor="force"] svg'), r = s.getBoundingClientRect();
        s.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: r.left + r.width * 0.9, clientY: r.top + 10, bubbles: true, cancelable: true}));""")
    wait.until(lambda b: b.execute_script("const c = document.getElementById('charts'); return c.dataset.to - c.dataset.from") < span * 0.9)
    result["zoomed"] = round(browser.execute_script("const c = document.getElementById('charts'); return c.dataset.to - c.dataset.from") / span, 2)
    shot("3-device")

    # An alert: force above its alarm limit for a while; the operator acknowledges it.
    call("twin.v1.TwinService/Ingest", None, admin, "application/connect+json", envelope(readings([990, 995, 1000, 1005], time.time())))
    deadline = time.monotonic() + 90  # the rule must hold 30 s, assessed every 5 s
    alert = None
    while time.monotonic() < deadline and not alert:
        _, alerts, _ = call("twin.v1.TwinService/ListAlerts", {"deviceIds": ["console-press"], "states": ["ALERT_STATE_OPEN"]}, admin)
        alert = next((a for a in alerts.get("alerts", []) if a["rule"] == "force.high"), None)
        if not alert:
            call("twin.v1.TwinService/Ingest", None, admin, "application/connect+json", envelope(readings([1010], time.time())))
            time.sleep(0.5)  # the alert rule needs time to hold: poll twind, not the page
    result["alert_opened"] = alert is not None
    browser.get(base + "/#/alerts")
    button = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'tr[data-alert="{alert["id"]}"] button.ack')))
    browser.find_element(By.CSS_SELECTOR, f'tr[data-alert="{alert["id"]}"] input.ack-comment').send_keys("on my way")
    shot("4-alerts")
    button.click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-alert="{alert["id"]}"][data-state="acknowledged"]')))
    _, after, _ = call("twin.v1.TwinService/ListAlerts", {"deviceIds": ["console-press"], "states": ["ALERT_STATE_ACKNOWLEDGED"]}, admin)
    acked = next((a for a in after.get("alerts", []) if a["id"] == alert["id"]), {})
    result["acked"] = {"by": acked.get("acknowledgedBy"), "comment": acked.get("ackComment")}

    # Shelving: refused without a reason (the page says why); with one it leaves the list, is
    # there with "show shelved", and comes back when unshelved.
    row = f'tr[data-alert="{alert["id"]}"]'
    browser.find_element(By.CSS_SELECTOR, f"{row} button.shelve").click()
    wait.until(lambda b: b.find_element(By.ID, "alerts-error").text.strip() != "")
    result["shelve_without_reason"] = browser.find_element(By.ID, "alerts-error").text
    browser.find_element(By.CSS_SELECTOR, f"{row} input.ack-comment").send_keys("sensor being recalibrated")
    browser.find_element(By.CSS_SELECTOR, f"{row} button.shelve").click()
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, row))
    browser.find_element(By.ID, "alerts-shelved").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'{row}[data-shelved="yes"]')))
    shot("4b-shelved")
    _, listed, _ = call("twin.v1.TwinService/ListAlerts", {"deviceIds": ["console-press"], "includeShelved": True}, admin)
    shelved = next((a for a in listed.get("alerts", []) if a["id"] == alert["id"]), {})
    result["shelved"] = {"by": shelved.get("shelvedBy"), "reason": shelved.get("shelveReason"), "until": bool(shelved.get("shelvedUntil"))}
    browser.find_element(By.CSS_SELECTOR, f"{row} button.unshelve").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'{row}[data-shelved="no"]')))
    _, listed, _ = call("twin.v1.TwinService/ListAlerts", {"deviceIds": ["console-press"]}, admin)
    result["unshelved"] = any(a["id"] == alert["id"] for a in listed.get("alerts", []))

    # The operator records an inspection on the device page; it is in the maintenance log.
    browser.get(base + "/#/device/console-press")
    wait.until(EC.visibility_of_element_located((By.ID, "event-notes")))
    browser.find_element(By.ID, "event-notes").send_keys("bearing checked by console")
    browser.find_element(By.ID, "event-submit").click()
    wait.until(lambda b: "bearing checked by console" in b.find_element(By.ID, "device-events").text)
    _, events, _ = call("twin.v1.TwinService/ListEvents", {"deviceIds": ["console-press"]}, admin)
    recorded = next((e for e in events.get("events", []) if e.get("notes") == "bearing checked by console"), {})
    result["event"] = {"kind": recorded.get("kind"), "by": recorded.get("recordedBy")}

    # Log out: the page is back at the login form and the session is gone on the server.
    browser.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    browser.get(base + "/#/overview")
    wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    result["logout_back_to_login"] = True

    # A viewer sees no acknowledge button, and the server refuses the call anyway.
    log_in("victor", "victor-password-123")
    browser.get(base + "/#/device/console-press")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#device-alerts tbody tr")))
    result["viewer_buttons"] = len(browser.find_elements(By.CSS_SELECTOR, "#device-alerts button"))
    shot("5-viewer-device")
    result["viewer_event_form_hidden"] = not browser.find_element(By.ID, "event-form").is_displayed()
    browser.get(base + "/#/models")
    wait.until(lambda b: b.find_element(By.ID, "models-active").text != "")
    result["viewer_model_actions_hidden"] = not browser.find_element(By.ID, "models-actions").is_displayed()
    shot("6-viewer-models")
    result["viewer_notifications_hidden"] = not browser.find_element(By.ID, "nav-notifications").is_displayed()
    _, viewer, _ = call("twin.v1.AuthService/Login", {"username": "victor", "password": "victor-password-123"})
    status, refused, _ = call("twin.v1.TwinService/ResolveAlert", {"alertId": alert["id"]}, viewer["accessToken"])
    result["viewer_refused"] = {"status": status, "code": refused.get("code")}

    # An admin sets the channels and routes on the notifications page: a bad text is refused
    # naming its line, a good one checks out, then is put in force and its channel listed.
    browser.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "login-username")))
    log_in("admin", admin_password)
    wait.until(EC.visibility_of_element_located((By.ID, "nav-notifications")))
    browser.find_element(By.ID, "nav-notifications").click()
    wait.until(EC.visibility_of_element_located((By.ID, "notify-text")))
    good = "channels:\n  - name: control-room\n    type: slack\n    url: http://127.0.0.1:9/hooks/room\nroutes:\n  - name: everything\n    channels: [control-room]\n"
    text = browser.find_element(By.ID, "notify-text")
    text.clear()
    text.send_keys(good + "    colour: red\n")
    browser.find_element(By.ID, "notify-save").click()
    wait.until(lambda b: b.find_element(By.ID, "notify-error").text != "")
    result["notify_bad"] = browser.find_element(By.ID, "notify-error").text
    text.clear()
    text.send_keys(good)
    browser.find_element(By.ID, "notify-check").click()
    wait.until(lambda b: "Checks out" in b.find_element(By.ID, "notify-result").text)
    result["notify_checked"] = browser.find_element(By.ID, "notify-result").text
    browser.find_element(By.ID, "notify-save").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#channels tr[data-channel='control-room']")))
    result["notify_saved"] = browser.find_element(By.ID, "notify-result").text
    _, config, _ = call("twin.v1.TwinService/GetNotifyConfig", {}, admin)
    result["notify_in_force"] = config.get("text") == good
    shot("7-admin-notifications")
    # 401s are the access token's expiry (refreshed); the 400s are the shelve and the
    # notifications text refused on purpose above.
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]
              and not (("ShelveAlert" in e["message"] or "SetNotifyConfig" in e["message"]) and "400" in e["message"])]
    result["console_errors"] = [e["message"][:200] for e in errors]
finally:
    browser.quit()

print(json.dumps(result))
