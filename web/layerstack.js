// LayerStack's frontend extension (loaded from WEB_DIRECTORY by every ComfyUI frontend):
// 1. one setting in ComfyUI's Settings dialog (Settings → LayerStack). The server reads the stored value
//    (comfy.settings.json of the default user) when a layer file is missing: see README "Coming from ComfyUI-layerdiffuse".
// 2. download links on the layered-file save nodes. The frontend previews only images, video, audio, 3D (and text on
//    newer versions); a PSD or OpenRaster file has no output key it renders as a link, so the save nodes report their
//    files under their own key ("psd", "ora"; docs/FORMATS.md#files-in-the-web-ui) next to the composite preview, and
//    this extension shows them on the node as links to ComfyUI's /view, as core's own extensions do for their custom
//    output keys.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

app.registerExtension({
  name: "LayerStack.Settings",
  settings: [
    {
      id: "LayerStack.AllowDownload",
      category: ["LayerStack", "Layer files", "Download missing layer files"],
      name: "Download missing LayerDiffuse layer files automatically",
      tooltip:
        "When a workflow needs an official LayerDiffuse file that is not in models/layer_model, download it from " +
        "huggingface.co/LayerDiffusion/layerdiffusion-v1 (checked before use; an existing file is never replaced). " +
        "Off: the node stops and names the file, its URL and the folder to put it in.",
      type: "boolean",
      defaultValue: false,
    },
  ],
});

// save node id -> the output key its files are listed under (nodes/save.py)
const FILE_OUTPUTS = { LayerStackSavePSD: "psd", LayerStackSaveORA: "ora" };
const LINKS_WIDGET = "layerstack_downloads";

function viewUrl(file) {
  const params = new URLSearchParams({
    filename: file.filename,
    subfolder: file.subfolder ?? "",
    type: file.type ?? "output",
  });
  return api.apiURL(`/view?${params}`);
}

// One link per saved file, in a widget that is never saved into the workflow nor sent with the prompt.
function showFileLinks(node, files) {
  if (!Array.isArray(files) || !files.length) return;
  let widget = node.widgets?.find((w) => w.name === LINKS_WIDGET);
  if (!widget) {
    const box = document.createElement("div");
    box.className = "layerstack-downloads";
    box.style.cssText = "display:flex;flex-direction:column;padding:2px 4px;font-size:12px;line-height:20px";
    // A fixed height, one line per file (at most 4, then the box scrolls), laid out before the image preview. The
    // frontend gives a DOM widget's element its slot height less the widget's margin above and below, and adds 4 to
    // what computeSize says: both are counted here (the height options serve frontends that lay out by those).
    const outer = () => 20 * Math.min(box.childElementCount || 1, 4) + 8 + 2 * (widget?.margin ?? 10);
    widget = node.addDOMWidget(LINKS_WIDGET, "layerstack_downloads", box, {
      serialize: false,
      hideOnZoom: false,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: outer,
      getMaxHeight: outer,
      getHeight: outer,
    });
    widget.serialize = false;
    widget.serializeValue = () => undefined;
    widget.computeSize = (width) => [width ?? node.size[0], outer() - 4];
  }
  const box = widget.element;
  box.style.overflowY = files.length > 4 ? "auto" : "hidden";
  box.replaceChildren(
    ...files.map((file) => {
      const link = document.createElement("a");
      const shown = file.subfolder ? `${file.subfolder}/${file.filename}` : file.filename;
      link.href = viewUrl(file);
      link.download = file.filename;
      link.textContent = `⬇ ${shown}`;
      link.title = `Download ${shown} (from ComfyUI's ${file.type ?? "output"} folder)`;
      link.className = "layerstack-download";
      link.dataset.filename = file.filename;
      link.style.cssText = "color:var(--p-primary-color, #6cf);text-decoration:underline;white-space:nowrap";
      return link;
    }),
  );
  node.setSize?.([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "LayerStack.FileDownloads",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const key = FILE_OUTPUTS[nodeData.name];
    if (!key) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      showFileLinks(this, output?.[key]);
    };
  },
  // Outputs put back on the graph without a new run (a finished job opened from the queue or assets panel).
  onNodeOutputsUpdated(outputs) {
    for (const [id, output] of Object.entries(outputs ?? {})) {
      const node = app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id);
      const key = node && FILE_OUTPUTS[node.comfyClass ?? node.type];
      if (key) showFileLinks(node, output?.[key]);
    }
  },
});
