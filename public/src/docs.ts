// The API reference page (/docs): Swagger UI, bundled here at build time (no CDN), rendering the
// server's own /openapi.json. Calls from the page are off: nobody should paste an API key into a
// documentation page, and the strict CSP would not let it reach another server anyway.
import SwaggerUIBundle from 'swagger-ui-dist/swagger-ui-bundle.js';

SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#reference',
  deepLinking: true,
  docExpansion: 'list',
  defaultModelsExpandDepth: 0,
  supportedSubmitMethods: [],
  validatorUrl: null,
  displayOperationId: true,
});
