// Swagger UI on our own OpenAPI document (kept out of the page: the CSP forbids inline script).
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true });
});
