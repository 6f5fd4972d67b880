// Draws every Vega-Lite chart of the page: an element with data-chart="ID" and, next to it,
// <script type="application/json" id="ID"> holding the spec with its data (see _macros.html).
"use strict";

function drawCharts(root) {
  if (typeof vegaEmbed !== "function") {
    return;
  }
  root.querySelectorAll("[data-chart]").forEach(function (element) {
    const source = document.getElementById(element.dataset.chart);
    if (!source || element.dataset.drawn) {
      return;
    }
    element.dataset.drawn = "yes";
    const spec = JSON.parse(source.textContent);
    vegaEmbed(element, spec, { actions: false, mode: "vega-lite", renderer: "svg" }).catch(function (error) {
      element.textContent = "The chart could not be drawn: " + error.message;
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  drawCharts(document);
  document.body.addEventListener("htmx:afterSwap", function (event) {
    drawCharts(event.target);
  });
});
