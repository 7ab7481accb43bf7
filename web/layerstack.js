// LayerStack's one setting in ComfyUI's Settings dialog (Settings → LayerStack). The server reads the stored value
// (comfy.settings.json of the default user) when a layer file is missing: see README "Coming from ComfyUI-layerdiffuse".
import { app } from "../../scripts/app.js";

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
