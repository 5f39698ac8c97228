/**
 * Error classes for everything the machine itself detects. Each carries a message that says
 * what was wrong and, where possible, what to do about it; the CLI prints `message` and never
 * a stack trace for these.
 */

/** Base class of every error the VMM raises on purpose (bad input, host limits, guest faults). */
export class VmmError extends Error {
  /** Process exit status the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad command-line usage: the CLI exits with status 2. */
export class UsageError extends VmmError {
  override readonly exitCode: number = 2;
}

/** A guest-physical access outside guest RAM (a device DMA or a loader writing too far). */
export class GuestMemoryError extends VmmError {}

/** Two devices claim the same port or MMIO address, or a range is malformed. */
export class BusConflictError extends VmmError {}

/** A kernel image that is not what its format says, is truncated, or does not fit. */
export class ImageError extends VmmError {}

/** A plugin that cannot be loaded, or a device handler that failed at run time. */
export class PluginError extends VmmError {}

/** The host cannot run the guest: no /dev/kvm, a KVM variant with known limits, no memory. */
export class HostError extends VmmError {}

/** The guest stopped in a way a real machine would not survive (triple fault, bad state). */
export class GuestFaultError extends VmmError {}

/** Returns the message to show a user for any thrown value, without a stack trace. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
