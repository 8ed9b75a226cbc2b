// hpsearch serve: drop or pick an image (or click a test image), POST it to /api/predict, show the answer.
"use strict";

const $ = (id) => document.getElementById(id);
let shownVersion = null;  // the winner_version the header describes (the server counts the winners it loaded)
let latest = 0;  // the newest file sent: an older one's answer arriving late is dropped, not shown as this one's

function showStale(out) {  // a new winner.pt the server could not load: it still serves the old one, and says so
  $("stale").textContent = out.stale || "";
  $("stale").hidden = !out.stale;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  if (message) $("result").hidden = true;  // an earlier answer must not read as this file's
}

function render(out, name, note) {
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
  // the file it answers (the busy line naming it is gone), and files dropped beside it that were not sent
  $("answered-by").textContent = `${name}: answered by the winner of trial ${out.trial ?? "?"}${note || ""}`;
  showStale(out);
  if (shownVersion !== null && out.winner_version !== shownVersion) {
    // a retraining replaced winner.pt since the header was written: say so, and describe the one that answered
    $("changed").textContent = `The winner was replaced since this page loaded (a retraining wrote a new ` +
      `winner.pt): answers now come from trial ${out.trial ?? "?"}, and the line above describes it.`;
    $("changed").hidden = false;
    loadInfo().catch((err) => showError(`could not load /api/info: ${err}`));
  }
  $("result").hidden = false;
}

async function send(file, name, note) {
  const mine = ++latest;
  name = name || file.name || "the image";
  showError("");
  $("result").hidden = true;  // the last answer is not this file's
  $("busy").textContent = `classifying ${name}\u2026`;
  $("busy").hidden = false;
  const form = new FormData();
  form.append("file", file, name);
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const out = await response.json();
    if (mine !== latest) return;
    if (!response.ok) {
      showError(`${response.status}: ${out.detail}`);
      return;
    }
    render(out, name, note);
  } catch (err) {
    if (mine === latest) showError(`the server did not answer: ${err}`);
  } finally {
    if (mine === latest) $("busy").hidden = true;
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
  shownVersion = info.winner_version;
  showStale(info);
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
  const files = (e.dataTransfer && e.dataTransfer.files) || [];
  // one answer at a time: the first file is sent, and the others are said, not dropped unseen
  const note = files.length > 1 ? ` (${files.length} files were dropped: only ${files[0].name} is classified; ` +
    "drop one at a time)" : "";
  if (files.length) send(files[0], files[0].name, note);
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
