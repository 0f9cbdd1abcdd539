/**
 * gatekeeper-plugin-sdk/testing: test a plugin without gatekeeper.
 *
 * {@link startTestHost} serves a plugin in memory and plays gatekeeper's side of the protocol
 * (handshake, `configure`, `start`, hook calls, `stop`), checking every result against the
 * protocol's schema as gatekeeper does; {@link makeRequest} and {@link makeResponse} build what
 * gatekeeper sends to hooks.
 *
 * ```js
 * import { makeRequest, startTestHost } from 'gatekeeper-plugin-sdk/testing';
 *
 * const host = await startTestHost(new MyModifier(), { config: { limit: '10' } });
 * try {
 *   const result = await host.modifyRequest(makeRequest({ path: '/api', headers: { 'X-Token': 'a' } }));
 * } finally {
 *   await host.stop();
 * }
 * ```
 *
 * @module gatekeeper-plugin-sdk/testing
 */

export { makeRequest, makeResponse } from './src/testing/builders.js';
export { DEFAULT_STEP_TIMEOUT_MS, ProtocolViolation, startTestHost, TestHost } from './src/testing/host.js';
export { duplexPair } from './src/testing/duplex.js';
