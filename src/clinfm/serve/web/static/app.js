// Small progressive enhancements; every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // Highlight one kind of event in the timeline when its row label is clicked.
  document.querySelectorAll("#timeline-chart .row-label").forEach((label) => {
    label.addEventListener("click", () => {
      const kind = label.textContent.trim();
      const chart = document.getElementById("timeline-chart");
      const active = chart.dataset.focus === kind;
      chart.dataset.focus = active ? "" : kind;
      chart.querySelectorAll(".mark").forEach((m) => {
        m.style.opacity = active || m.classList.contains(kind) ? "1" : "0.15";
      });
    });
  });
  // Size the model card frame to its content (same-origin srcdoc is sandboxed, so use a fixed tall frame).
  const frame = document.getElementById("model-card");
  if (frame) frame.style.height = Math.max(600, window.innerHeight - 200) + "px";
});
