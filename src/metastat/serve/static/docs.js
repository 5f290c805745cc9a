/* Offline API docs: Swagger UI (/docs) or ReDoc (/redoc) over /openapi.json, vendored assets only. */
"use strict";
if (document.getElementById("swagger-ui")) {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout",
  });
} else {
  Redoc.init("/openapi.json", { hideDownloadButton: false }, document.getElementById("redoc"));
}
