/**
 * Every bound of the transactional checker, in one place. The checker must always finish with a
 * verdict (never `unknown`), so the cycle search is bounded per strongly connected component
 * rather than per history: a huge component costs a bounded amount of work and still yields at
 * least one cycle (the first search from any of its edges always closes one).
 */

/** Examples kept per anomaly name (all are counted). */
export const elleExamplesPerAnomalyMax = 8;

/** Transactions per history: node indexes live in 32-bit typed arrays. */
export const elleTxnsMax = 10_000_000;

/** Start edges tried per anomaly class in one strongly connected component. */
export const elleCycleStartsPerSearchMax = 32;

/**
 * Adjacency entries one class's search may scan in one component before it stops trying further
 * start edges (the search under way and the first start always run to their end).
 */
export const elleCycleEdgeVisitsPerSearchMax = 2_000_000;

/** Edges of a cycle named in its explanation; the rest are summarized as "… and N more". */
export const elleExplanationEdgesMax = 6;

/** List elements shown when an explanation quotes a list read (the last ones; earlier ones elided). */
export const elleListShownElementsMax = 6;

// Load-time checks of how the limits relate.
if (!(elleExamplesPerAnomalyMax >= 1)) throw new Error('elle limits: at least one example per anomaly');
if (!(elleCycleStartsPerSearchMax >= 1)) throw new Error('elle limits: at least one cycle search start');
if (!(elleTxnsMax * 2 < 2 ** 31)) throw new Error('elle limits: elleTxnsMax too large for 32-bit node indexes (the layered search uses 2 states per node)');
if (!(elleExplanationEdgesMax >= 2 && elleListShownElementsMax >= 1)) throw new Error('elle limits: explanations too short');
