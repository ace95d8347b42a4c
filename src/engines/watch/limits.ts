/** Limits of the watch engine (units last). */

/** Revisions of history one catch-up step reads for one watcher. */
export const watchCatchUpRevisionsMax = 1000;

/**
 * Key and value bytes one catch-up step reads for one watcher (whole revisions; at least one):
 * a watcher far behind on large values catches up in pieces of about this size, not in one
 * response of a thousand revisions' worth.
 */
export const watchCatchUpBytesMax = 4 * 1024 * 1024;

/**
 * Memory the most recent revisions the hub keeps as they were applied may hold, so watchers that
 * fell a little behind catch up from those same event objects (whose encodings the streams
 * already made) instead of re-reading and re-encoding the store's history. Counted as the whole
 * buffers their keys and values are views of (store arenas), each once.
 */
export const watchRecentEventsBytesMax = 8 * 1024 * 1024;

/**
 * What one recent event costs on the heap besides its buffers, counted against
 * watchRecentEventsBytesMax: the event, its KeyValue (and previous one) and their views, about
 * 450 bytes measured in a heap snapshot of 500,000 delete events.
 */
export const watchRecentEventBytes = 448;

/** Bytes of responses a watch stream may hold for a slow client before its watchers fall back to history. */
export const watchStreamBufferBytesMax = 16 * 1024 * 1024;

/** Watchers one stream may hold. */
export const watchersPerStreamMax = 10_000;

/** How often watchers with progress_notify hear the current revision when idle (etcd: 10 minutes). */
export const watchProgressIntervalMsDefault = 10 * 60 * 1000;
