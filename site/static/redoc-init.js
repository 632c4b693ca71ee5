// Redoc on our own OpenAPI document.
window.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("redoc");
  window.Redoc.init(el.dataset.specUrl, { hideDownloadButton: false }, el);
});
