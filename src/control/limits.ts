/** The control plane's limits and waits (units last), with load-time checks of how they relate. */

/** How long `start` waits for a started server to answer Maintenance.Status. */
export const startWaitMs = 30_000;
/** How long `stop` waits for a server to exit after SIGTERM (it flushes its log store first). */
export const stopWaitMs = 30_000;
/** How long `stop --force` waits for the process to vanish after SIGKILL. */
export const killWaitMs = 5_000;
/** Between two looks at a starting or stopping process. */
export const pollMs = 100;
/** One Maintenance.Status or /health call while starting or in `status`. */
export const probeTimeoutMs = 2_000;
/** How often `logs -f` looks for new lines. */
export const followPollMs = 200;

/** Lines of the log `logs` prints by default, and a failed start shows. */
export const logLinesDefault = 50;
export const startFailureLogLines = 20;
/** `logs -n` at most. */
export const logLinesMax = 100_000;
/** Bytes read from a log's end to find its last lines (longer lines are cut). */
export const logTailBytesMax = 4 * 1024 * 1024;

/** Instance names: a letter or digit, then letters, digits, '.', '_' or '-'. */
export const instanceNameLengthMax = 63;

/**
 * Free ports are picked in this range, below Linux's ephemeral range (32768+), so that an
 * outgoing connection can never take a port an instance needs when it starts again.
 */
export const portPickMin = 20_000;
export const portPickMax = 32_000;
export const portPickAttemptsMax = 500;

/** Members of the `dev` template's local cluster. */
export const devMembers = 3;
/** With --client-port P, dev member i (from 1) uses P + stride·(i−1), its peer port +1, metrics +2. */
export const devPortStride = 10;

if (probeTimeoutMs >= startWaitMs) throw new Error('a start must allow more than one status probe');
if (pollMs >= probeTimeoutMs) throw new Error('polls must be shorter than a probe');
if (startFailureLogLines > logLinesDefault) throw new Error('a failed start shows at most the default log lines');
if (portPickMax >= 32_768 || portPickMin >= portPickMax) throw new Error('the pick range must sit below the ephemeral ports');
if (portPickMax + devPortStride * devMembers >= 65_536) throw new Error('dev ports must stay below 65536');
