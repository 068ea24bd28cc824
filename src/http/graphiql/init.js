// Starts GraphiQL with the settings taskql put into the page. Kept in its own file (not an
// inline script) so the page's Content-Security-Policy can forbid inline scripts.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('graphiql-config').textContent);
  // Subscriptions go over a WebSocket on the same path (graphql-transport-ws). A WebSocket
  // carries no headers from the editor, so the Authorization header travels in
  // connection_init, as Apollo's and urql's connectionParams do: one fetcher (and socket)
  // per header value.
  var socketUrl = new URL(config.endpoint, window.location.href);
  socketUrl.protocol = socketUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  var fetchers = {};
  var fetcherFor = function (authorization) {
    var key = authorization || '';
    if (!fetchers[key]) {
      fetchers[key] = GraphiQL.createFetcher({
        url: config.endpoint,
        subscriptionUrl: socketUrl.href,
        wsConnectionParams: authorization ? { authorization: authorization } : {},
      });
    }
    return fetchers[key];
  };
  // The header editor opens with a placeholder ("Bearer <paste a token…>"). Sent as is it
  // would be an invalid token, which taskql rightly refuses with 401; until the user puts a
  // real token in, send no Authorization header (anonymous requests may introspect).
  var fetcher = function (params, options) {
    var headers = Object.assign({}, (options && options.headers) || {});
    var authorization = null;
    Object.keys(headers).forEach(function (name) {
      if (name.toLowerCase() !== 'authorization') return;
      if (String(headers[name]).indexOf('<') !== -1) {
        delete headers[name];
      } else {
        authorization = String(headers[name]);
      }
    });
    return fetcherFor(authorization)(params, Object.assign({}, options, { headers: headers }));
  };
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
