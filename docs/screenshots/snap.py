import sys
import time

from playwright.sync_api import sync_playwright

url, out = sys.argv[1], sys.argv[2]
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--use-gl=angle",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--ignore-gpu-blocklist",
        ],
    )
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    log = []
    page.on("pageerror", lambda e: log.append(str(e)))
    page.goto(url)
    time.sleep(30)
    page.screenshot(path=out)
    print("errors:", log[:5])
    browser.close()
