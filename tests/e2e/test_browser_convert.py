"""The UI→API converter against the real frontend: each template, loaded into the editor the host ships (headless
Chromium, tests/fixtures/browser.py) and converted by the editor's own graphToPrompt, gives exactly what
batch_runner.convert.ui_to_api gives with the host's /object_info: widget order, control values, titles, and
widget-only inputs such as Create Layered Image's `compositor` (template 35, on hosts that have it). Templates built
on core nodes this host lacks are named and left out (the editor would open them with missing nodes)."""

from __future__ import annotations

from batch_runner.convert import ui_to_api
from fixtures.browser import Browser
from fixtures.workflows import NEWEST_HOST_TEMPLATES, TEMPLATES, not_on_this_host, ui_workflow

PAGE_TIMEOUT_S = 120


def test_every_template_converts_as_the_editor_converts_it(comfy_server, tmp_path):
    object_info = comfy_server.object_info()
    b = Browser(tmp_path / "downloads", tmp_path / "screenshots")
    try:
        b.driver.get(comfy_server.url + "/")
        b.wait("the ComfyUI editor (its graph and canvas)", lambda: b.js(
            "return !!(window.app?.graph && window.app?.canvas && document.querySelector('canvas'))"),
            timeout=PAGE_TIMEOUT_S)
        b.driver.set_script_timeout(60)
        checked, left_out = [], []
        for slug in sorted(TEMPLATES):
            reason = not_on_this_host(slug, object_info)
            if reason:
                left_out.append(reason)
                continue
            editor = b.driver.execute_async_script("""
                const [workflow, done] = arguments;
                (async () => {
                    await window.app.loadGraphData(workflow);
                    const { output } = await window.app.graphToPrompt();
                    done(JSON.parse(JSON.stringify(output)));
                })().catch(e => done({error: String(e)}));""", ui_workflow(slug))
            assert ui_to_api(ui_workflow(slug), object_info) == editor, slug
            checked.append(slug)
    finally:
        b.close()
    print(f"\n{len(checked)} templates convert as the editor converts them; left out:\n" + "\n".join(left_out))
    assert len(checked) + len(left_out) == len(TEMPLATES) and len(left_out) <= len(NEWEST_HOST_TEMPLATES)
