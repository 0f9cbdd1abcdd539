/**
 * The SDK's own log lines, on stderr (gatekeeper copies a plugin's stderr into its log, tagged
 * with the plugin's name). stdout is never touched: it is the plugin author's.
 *
 * The level comes from `GATEKEEPER_SDK_LOG`: `debug`, `info` (default), `warn`, `error` or `off`.
 *
 * @module
 */

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, off: 100 };

/**
 * @typedef {object} Logger
 * @property {(message: string, error?: unknown) => void} debug
 * @property {(message: string, error?: unknown) => void} info
 * @property {(message: string, error?: unknown) => void} warn
 * @property {(message: string, error?: unknown) => void} error
 */

/**
 * A logger writing `LEVEL gatekeeper-plugin-sdk: message` lines (plus an error's stack, when
 * given) through `write`.
 *
 * @param {object} [options]
 * @param {string} [options.level] minimum level; default `GATEKEEPER_SDK_LOG` or `info`
 * @param {(text: string) => void} [options.write] default: write to stderr
 * @returns {Logger}
 */
export function createLogger(options = {}) {
  const level = (options.level ?? process.env.GATEKEEPER_SDK_LOG ?? 'info').toLowerCase();
  const threshold = LEVELS[level] ?? LEVELS.info;
  const write = options.write ?? ((text) => process.stderr.write(text));
  /** @param {keyof LEVELS} name */
  const at = (name) => (message, error) => {
    if (LEVELS[name] < threshold) return;
    let text = `${name.toUpperCase()} gatekeeper-plugin-sdk: ${message}`;
    if (error !== undefined) {
      text += error instanceof Error && error.stack ? `\n${error.stack}` : `: ${String(error)}`;
    }
    write(`${text}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger that drops everything (for tests). @type {Logger} */
export const silentLogger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});
