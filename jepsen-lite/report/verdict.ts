/**
 * What a run's verdicts come to as an exit status, the same for `dkv jepsen sim` (many seeds) and
 * `dkv jepsen run` (one run): a violation anywhere wins (1); otherwise anything the checkers could
 * not decide — never taken for success — is 2; only all-ok is 0. Usage errors are 2 as well.
 */
export const exitOk = 0;
export const exitViolation = 1;
export const exitUnknown = 2;

export interface VerdictCounts {
  /** Seeds (or runs) with a violation. */
  readonly violations: number;
  /** Seeds (or runs) a checker answered `unknown` for (or that did not finish). */
  readonly unknowns: number;
}

export function exitCodeOfVerdicts(counts: VerdictCounts): number {
  for (const [name, n] of Object.entries(counts)) {
    if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${name} must be a non-negative integer, got ${n}`);
  }
  if (counts.violations > 0) return exitViolation;
  if (counts.unknowns > 0) return exitUnknown;
  return exitOk;
}
