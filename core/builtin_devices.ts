/**
 * The module paths of the built-in devices (relative to core/), in one small module: the machine
 * imports them by URL (core/vm.ts), and the CLI grants its Worker read access to their module
 * graphs (core/vm_permissions.ts) without loading the machine on the main thread.
 */

/** The built-in PC devices, loaded through the same path as third-party plugins. */
export const BUILTIN_DEVICES: readonly string[] = [
  "../devices/pit8254.ts",
  "../devices/rtc_cmos.ts",
  "../devices/acpi_pm.ts",
  "../devices/uart16550.ts",
  "../devices/i8042.ts",
  "../devices/debug_exit.ts",
  "../devices/post_code.ts",
  "../devices/vmm_info.ts",
];

/**
 * The virtio devices the configuration adds (`--drive`, `--rng`, `--share`, `--net`,
 * `--console virtio`), each attached with the MMIO window and interrupt line the resource
 * allocator gives it, which the DSDT then announces; a restore recreates each of them.
 */
export const VIRTIO_DEVICES = {
  blk: "../devices/virtio/blk.ts",
  rng: "../devices/virtio/rng.ts",
  p9: "../devices/virtio/p9.ts",
  net: "../devices/virtio/net.ts",
  console: "../devices/virtio/console.ts",
} as const;
