/** Small helpers for parsing subcommand options with clear errors. */
// One implementation of the flag helpers for every command (jepsen-lite's commands use it too,
// and jepsen-lite may not import src/cli).
import { UsageError } from '../../jepsen-lite/args';

export { UsageError, parseFlags as parseOptions, wholeOption as intOption } from '../../jepsen-lite/args';

/** Runs a command body, turning usage errors into a message and exit code 2. */
export async function withUsage(help: string, body: () => Promise<number> | number): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`dkv: ${error.message}\n\n${help}`);
      return 2;
    }
    throw error;
  }
}
