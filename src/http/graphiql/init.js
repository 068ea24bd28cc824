// Starts GraphiQL with the settings taskql put into the page. Kept in its own file (not an
// inline script) so the page's Content-Security-Policy can forbid inline scripts.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('graphiql-config').textContent);
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint });
  var props = {
    fetcher: fetcher,
    defaultEditorToolsVisibility: 'headers',
    isHeadersEditorEnabled: true,
    // Tokens are credentials: never keep them in localStorage unless the user opts in.
    shouldPersistHeaders: false,
  };
  if (config.headersAreLive) {
    // Development mode: a fresh, working token on every load.
    props.headers = config.headers;
  } else {
    props.defaultHeaders = config.headers;
  }
  if (config.query) {
    props.query = config.query;
  }
  if (config.defaultQuery) {
    props.defaultQuery = config.defaultQuery;
  }
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, props));
})();
