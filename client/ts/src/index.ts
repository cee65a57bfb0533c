/**
 * @citadel-go/client: the browser (and JavaScript) client SDK for Citadel
 * game servers. See README.md.
 *
 * @packageDocumentation
 */
export { LoginAPI, LoginError, type GateInfo, type LoginResponse } from "./login.js";
export {
  connect,
  Connection,
  ServerError,
  KickedError,
  ConnectionLostError,
  TimeoutError,
  ClosedError,
  type ConnectOptions,
  type ConnectionEvents,
  type ConnectionState,
  type WebSocketConstructor,
} from "./connection.js";
export { wire, WireError, encodeFrame, decodeFrame, type Fields, type Frame, type Message, type MessageClass } from "./codec.js";
export * from "./messages.js";
