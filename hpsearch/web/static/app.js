// hpsearch serve: drop or pick an image (or click a test image), POST it to /api/predict, show the answer.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  if (message) $("result").hidden = true;  // an earlier answer must not read as this file's
}

function render(out) {
  $("prediction").textContent = out.class_name;
  $("prediction").dataset.class = String(out.class_index);
  const top = $("top");
  top.replaceChildren();
  for (const t of out.top) {
    const li = document.createElement("li");
    li.textContent = `${t.class_name}: ${(100 * t.probability).toFixed(1)}%`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(150 * t.probability)}px`;
    li.appendChild(bar);
    top.appendChild(li);
  }
  $("seen").src = out.input_png;
  $("heatmap").src = out.heatmap_png;
  $("method").textContent = `heat map: ${out.method_name}; brighter = weighs more for "${out.class_name}"`;
  const unlike = $("unlike");
  unlike.hidden = !out.unlike_training;
  unlike.textContent = out.unlike_training
    ? `This does not look like the training images (score ${out.ood_score.toFixed(2)}; above 1 means farther ` +
      "from them than 99% of held-out training images): the prediction above says little."
    : "";
  $("result").hidden = false;
}

async function send(file, name) {
  showError("");
  const form = new FormData();
  form.append("file", file, name || file.name || "image");
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const out = await response.json();
    if (!response.ok) {
      showError(`${response.status}: ${out.detail}`);
      return;
    }
    render(out);
  } catch (err) {
    showError(`the server did not answer: ${err}`);
  }
}

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  const acc = info.test_accuracy == null ? "?" : (100 * info.test_accuracy).toFixed(2) + "%";
  // a winner chosen by its test accuracy (--winner-by test): that accuracy is optimistic, said as the report says it
  const chosen = info.winner_by === "test" ? " (selected on the test set: optimistic)" : "";
  const [c, h, w] = info.image_shape;
  $("info").textContent = `${info.dataset}: ${info.model} winner, test accuracy ${acc}${chosen}; ` +
    `input ${h}\u00d7${w}${c === 3 ? " RGB" : " grey"}; heat map: ${info.method_name}`;
  $("seen-caption").textContent = `what the net saw (${h}\u00d7${w})`;
  $("steps").textContent = info.preprocess_words;
}

async function loadExamples() {
  const examples = await (await fetch("/api/examples")).json();
  const box = $("examples");
  for (const ex of examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.title = `test image ${ex.index} (label ${ex.class_name})`;
    button.dataset.label = String(ex.label);
    const img = document.createElement("img");
    img.src = ex.png;
    img.alt = button.title;
    button.appendChild(img);
    button.addEventListener("click", async () => send(await (await fetch(ex.png)).blob(), `test${ex.index}.png`));
    box.appendChild(button);
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer && e.dataTransfer.files[0];
  if (file) send(file);
});
drop.addEventListener("keydown", (e) => {  // the zone is a button: Space opens the picker without scrolling
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
});
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) send(file);
  e.target.value = "";
});
window.addEventListener("dragover", (e) => e.preventDefault());  // a miss beside the zone must not open the file
window.addEventListener("drop", (e) => e.preventDefault());

loadInfo().catch((err) => showError(`could not load /api/info: ${err}`));
loadExamples().catch(() => {});
