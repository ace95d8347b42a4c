/**
 * What a member publishes of its build (`buildEngineVersions`): every engine's command version,
 * and the runtime's quiescence unless the member runs with --experimental-quiesce=false, so that
 * no group of the cluster quiesces while such a member is in it.
 */
import { describe, expect, it } from 'vitest';
import { membersSupport } from '../../src/engines/meta/index.js';
import { QUIESCE_FEATURE_VERSION, RUNTIME_FEATURES_ID } from '../../src/runtime/index.js';
import { buildEngineVersions } from '../../src/server/node.js';

const member = (id: number, engines: Record<string, number>) => ({ id, name: `n${id}`, peerUrls: [], isLearner: false, clientUrls: [`http://n${id}:2379`], engines });

describe('buildEngineVersions', () => {
  it('publishes quiescence only for a member that quiesces; one that does not keeps every group from quiescing', () => {
    const quiescing = buildEngineVersions({ quiesce: true });
    const ticking = buildEngineVersions({ quiesce: false });
    expect(quiescing[String(RUNTIME_FEATURES_ID)]).toBe(QUIESCE_FEATURE_VERSION);
    expect(ticking[String(RUNTIME_FEATURES_ID)]).toBeUndefined();
    // The engines' versions are the same either way.
    expect({ ...ticking, [String(RUNTIME_FEATURES_ID)]: QUIESCE_FEATURE_VERSION }).toEqual(quiescing);
    expect(membersSupport([member(1, quiescing), member(2, quiescing)], RUNTIME_FEATURES_ID, QUIESCE_FEATURE_VERSION)).toBe(true);
    expect(membersSupport([member(1, quiescing), member(2, ticking)], RUNTIME_FEATURES_ID, QUIESCE_FEATURE_VERSION)).toBe(false);
  });
});
