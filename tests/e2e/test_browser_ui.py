"""The artist's path in a real browser (headless Chromium, Debian's package, driven by Selenium) on the embedded ComfyUI
with this pack: the template browser lists every template of the pack with its thumbnail loaded (HTTP 200, decoded),
the no-model template *30* opens from it and runs with the Run button, and its PSD downloads through the link the Save
Layer Stack (PSD) node shows (web/layerstack.js) and holds the run's named layers (read with psd-tools); the
layer-file download switch is in the Settings dialog under LayerStack; the node search finds the pack's nodes.

Screenshots of each step go to $LAYERSTACK_SCREENSHOT_DIR when set, else to the test's temporary folder (never into
the repository); their paths are printed (pytest -s, or on failure).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import pytest
import requests
from PIL import Image
from psd_tools import PSDImage
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from fixtures.browser import Browser
from fixtures.comfy_env import comfy_version
from fixtures.workflows import TEMPLATE_DIR, TEMPLATES

STACK_TEMPLATE = TEMPLATES["stack_from_images"]  # "30 Layer stack from images to PSD (no model)": needs no model
PSD_NODE, COMPOSITE_NODE = "4", "6"  # node ids in that template: Save Layer Stack (PSD), Save RGBA PNG of the composite
PAGE_TIMEOUT_S, RUN_TIMEOUT_S = 120, 180
SAMPLES = TEMPLATE_DIR / "input"


@pytest.fixture
def browser(tmp_path):
    shots = Path(os.environ.get("LAYERSTACK_SCREENSHOT_DIR") or tmp_path / "screenshots")
    b = Browser(tmp_path / "downloads", shots / f"comfyui-{comfy_version()}")
    yield b
    print(f"\nbrowser: Chromium {b.version}; screenshots:\n" + "\n".join(f"  {p}" for p in b.shots))
    b.close()


def _click_text(b: Browser, scope: str, text: str) -> bool:
    """Click the clickable element around the first leaf element under `scope` whose text is exactly `text`."""
    return b.js("""
        const [scope, text] = arguments;
        const leaf = [...document.querySelectorAll(scope + ' *')]
            .find(e => e.children.length === 0 && (e.innerText || '').trim() === text);
        if (!leaf) return false;
        (leaf.closest('button, [role=button], a, li') || leaf).click();
        return true;""", scope, text)


def _open_template_browser(b: Browser) -> None:
    """Templates (side bar) → LayerStack (the pack's category). A new user's first visit opens the template browser by
    itself while the page settles; a click that its mask intercepts raises and is tried again."""
    def opened():
        if _click_text(b, "[role=dialog]", "LayerStack"):
            return True
        b.driver.find_element("css selector", "button[aria-label='Templates']").click()
        return False

    b.wait("the template browser's LayerStack category", opened, timeout=90, step=1)


def _template_cards(b: Browser) -> list[str]:
    return b.js("return [...document.querySelectorAll('[role=dialog] [data-testid^=template-workflow-]')]"
                ".map(e => e.dataset.testid.slice('template-workflow-'.length))")


def _check_thumbnails(b: Browser, url: str) -> None:
    """Each card scrolled into view (the browser loads thumbnails lazily) shows a decoded image, and the server
    answered 200 for the `<title>.jpg` the frontend asked for."""
    for title in TEMPLATES.values():
        selector = f"[role=dialog] [data-testid='template-workflow-{title}']"
        card = b.wait(f"the card of {title!r}", lambda s=selector: b.driver.find_element("css selector", s))
        b.js("arguments[0].scrollIntoView({block: 'center'})", card)
        b.wait(f"the thumbnail of {title!r} drawn (an <img> with pixels)", lambda c=card: b.js(
            "return [...arguments[0].querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0)", c),
            timeout=30)
    statuses = b.response_statuses()
    for title in TEMPLATES.values():
        thumb = f"{url}/api/workflow_templates/layerstack/{title}.jpg"
        asked = {u: s for u, s in statuses.items() if unquote(u.split("?")[0]) == thumb}
        assert asked, f"the frontend never asked for the thumbnail of {title!r} ({thumb})"
        assert set(asked.values()) == {200}, f"thumbnail of {title!r}: HTTP {asked}"


def _history_entry_with(url: str, psd_name: str) -> dict:
    history = requests.get(f"{url}/history", timeout=30).json()
    for entry in history.values():
        files = entry.get("outputs", {}).get(PSD_NODE, {}).get("psd", [])
        if any(f["filename"] == psd_name for f in files) and entry.get("status", {}).get("completed"):
            return entry
    return {}


def test_template_browser_run_and_psd_download_in_a_real_browser(comfy_server, browser):
    b, url = browser, comfy_server.url
    for sample in SAMPLES.iterdir():  # the shipped pictures the template loads (other tests upload their own)
        assert comfy_server.upload_image(sample, exact=True) == sample.name
    b.driver.get(url + "/")
    b.wait("the ComfyUI editor (its graph and canvas)", lambda: b.js(
        "return !!(window.app?.graph && window.app?.canvas && document.querySelector('canvas'))"),
        timeout=PAGE_TIMEOUT_S)

    # 1. the template browser lists the pack's templates, each with its thumbnail
    _open_template_browser(b)
    cards = b.wait("the pack's template cards", lambda: len(_template_cards(b)) >= len(TEMPLATES) and _template_cards(b),
                   timeout=PAGE_TIMEOUT_S)
    assert sorted(cards) == sorted(TEMPLATES.values())
    _check_thumbnails(b, url)
    b.js("arguments[0].scrollIntoView({block: 'center'})",
         b.driver.find_element("css selector", f"[data-testid='template-workflow-{STACK_TEMPLATE}']"))
    b.screenshot("template-browser-layerstack")

    # 2. template 30 opens from its card
    b.driver.find_element("css selector", f"[data-testid='template-workflow-{STACK_TEMPLATE}']").click()
    b.wait("template 30 open on the canvas", lambda: "LayerStackSavePSD" in (b.js(
        "return (window.app?.graph?.nodes ?? []).map(n => n.type)") or []), timeout=PAGE_TIMEOUT_S)
    b.wait("the template browser closed", lambda: not b.driver.find_elements(
        "css selector", "[role=dialog] [data-testid^=template-workflow-]"))
    b.screenshot("template-30-opened")

    # 3. it runs with the editor's Run button
    run = b.wait("the Run button", lambda: [e for e in b.driver.find_elements("css selector", "button")
                                            if e.text.strip() == "Run" and e.is_displayed()])
    started = time.monotonic()
    run[0].click()
    link = b.wait("the PSD download link on the Save Layer Stack (PSD) node",
                  lambda: b.driver.find_elements("css selector", "a.layerstack-download"), timeout=RUN_TIMEOUT_S)[0]
    psd_name = link.get_attribute("data-filename")
    entry = b.wait(f"the run that wrote {psd_name} finished (/history)",
                   lambda: _history_entry_with(url, psd_name), timeout=RUN_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success", entry["status"]
    print(f"\ntemplate 30 ran from the UI in {time.monotonic() - started:.1f}s")

    # 4. the link, as the user clicks it: the node brought into view at 100 % (a zoomed-out canvas draws nodes
    # without their widgets), then a real click; the browser saves the file
    b.js("""const node = window.app.graph.nodes.find(n => n.type === 'LayerStackSavePSD');
            window.app.canvas.ds.scale = 1; window.app.canvas.centerOnNode(node); window.app.canvas.setDirty(true, true);""")
    link = b.wait("the PSD link shown", lambda: [e for e in b.driver.find_elements("css selector", "a.layerstack-download")
                                                 if e.is_displayed()])[0]
    href = urlparse(link.get_attribute("href"))
    assert href.path.endswith("/view") and parse_qs(href.query)["filename"] == [psd_name], link.get_attribute("href")
    b.screenshot("template-30-ran-psd-link")
    box = b.js("const r = arguments[0].getBoundingClientRect(), p = arguments[0].parentElement; "
               "return [r.height, p.clientHeight, p.scrollHeight]", link)
    assert box[0] >= 12 and box[1] >= box[2] - 1, f"the link is clipped on the node: link/box/content heights {box}"
    saved = b.js("return window.app.graph.serialize().nodes.find(n => n.type === 'LayerStackSavePSD').widgets_values")
    assert saved == ["LayerStack/layers"], f"the link widget must not be saved into the workflow: {saved}"
    link.click()
    downloaded = b.wait_for_download(psd_name)

    # 5. the downloaded file is the PSD the run wrote, with the stack's named layers
    [psd_info] = entry["outputs"][PSD_NODE]["psd"]
    written = comfy_server.output_dir / psd_info["subfolder"] / psd_info["filename"]
    assert downloaded.read_bytes() == written.read_bytes()
    psd = PSDImage.open(downloaded)
    assert [layer.name for layer in psd] == ["background", "foreground", "mask"]
    assert [layer.visible for layer in psd] == [True, True, False]  # the mask layer travels hidden
    [composite_info] = entry["outputs"][COMPOSITE_NODE]["images"]
    composite = Image.open(io.BytesIO(comfy_server.fetch(composite_info))).convert("RGBA")
    assert psd.size == composite.size == Image.open(SAMPLES / "layerstack_background.png").size
    merged = np.asarray(psd.composite().convert("RGB"), dtype=np.int16)
    assert np.abs(merged - np.asarray(composite.convert("RGB"), dtype=np.int16)).max() <= 2
    assert psd.size[0] > 64 and merged.std() > 10  # a real picture, not a blank canvas

    # 6. the download switch for layer files is in the Settings dialog (Ctrl+,), under LayerStack
    b.js("document.activeElement?.blur?.()")  # the keyboard shortcut is ignored while a text field has the focus
    ActionChains(b.driver).key_down(Keys.CONTROL).send_keys(",").key_up(Keys.CONTROL).perform()
    b.wait("the Settings dialog's LayerStack category", lambda: _click_text(b, "[role=dialog]", "LayerStack"))
    b.wait("the setting 'Download missing LayerDiffuse layer files automatically'", lambda: b.js(
        "return [...document.querySelectorAll('[role=dialog]')].some(d => "
        "d.innerText.includes('Download missing LayerDiffuse layer files automatically'))"))
    b.screenshot("settings-layerstack")
    ActionChains(b.driver).send_keys(Keys.ESCAPE).perform()
    b.wait("the Settings dialog closed", lambda: not b.driver.find_elements("css selector", "[role=dialog]"))

    # 7. the node search (double-click on an empty canvas) finds the pack by the words people type: "psd" through the
    # display names everywhere; "layerdiffuse" where the host sends search_aliases (frontend 1.32.9 on 0.3.75 searches
    # only ids and display names, and finds nothing for it: README "Install")
    words = {"psd": "Save Layer Stack (PSD)"}
    if any("search_aliases" in d for d in comfy_server.object_info().values()):
        words["layerdiffuse"] = "Fetch Layer File"
    for word, node in words.items():
        b.driver.find_element("css selector", "button[aria-label='Create a new blank workflow']").click()
        b.wait("a blank workflow", lambda: b.js("return (window.app?.graph?.nodes ?? []).length === 0"))
        ActionChains(b.driver).move_to_element(b.driver.find_element("css selector", "#graph-canvas")).double_click().perform()
        box = b.wait("the node search box (focused)", lambda: b.js(
            "const e = document.activeElement; return e?.tagName === 'INPUT' ? e : null"))
        box.send_keys(word)
        # the page is a blank workflow: the node's name shows only in the search results
        b.wait(f"{node!r} among the node search results for {word!r}", lambda n=node: n in b.js(
            "return document.body.innerText"))
        b.screenshot(f"node-search-{word}")
        ActionChains(b.driver).send_keys(Keys.ESCAPE).perform()
