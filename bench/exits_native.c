/*
 * Native baseline for the `exits` bench group: drives the same real-mode guest loop as
 * bench/exits_group.ts straight from C, so denovisor's exit path (KVM_RUN -> exit -> bus ->
 * device -> resume) is compared with the cheapest possible VMM on the same machine and run.
 *
 * Built at bench time with `cc -O2 -shared -fPIC` and called through Deno FFI, so that rounds
 * of the C loop and of denovisor's loop interleave on one thread: on a shared, noisy machine
 * both sides then see the same conditions and the best round of each is comparable.
 * Built without -shared (`cc -O2 -o exits_native exits_native.c`) it is a command:
 *   exits_native <pio|mmio|hlt> <guest.bin> <exits per round> <rounds>
 * printing the best round's nanoseconds per exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x80000 /* 512 KiB: 0xa0000 lies outside RAM, so it is MMIO */
#define LOAD_ADDR 0x1000
#define IRQ_VECTOR 0x20

/* Exit kinds, as exits_group.ts numbers them. */
enum { MODE_PIO = 0, MODE_MMIO = 1, MODE_HLT = 2 };

struct native_vm {
  int kvm, vm, vcpu, run_size, want;
  uint8_t *mem;
  struct kvm_run *run;
};

/* A stand-in device, as small as a device can be: counts accesses, keeps the last value. */
static volatile uint64_t device_count, device_last;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Creates a VM running `guest` (len bytes) at 0x1000 in real mode. NULL on failure (errno). */
struct native_vm *native_open(int mode, const uint8_t *guest, int len) {
  struct native_vm *v = calloc(1, sizeof *v);
  if (!v || len <= 0 || len > MEM_SIZE - LOAD_ADDR) return NULL;
  v->want = mode == MODE_PIO ? KVM_EXIT_IO : mode == MODE_MMIO ? KVM_EXIT_MMIO : KVM_EXIT_HLT;
  if ((v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) return NULL;
  if ((v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0)) < 0) return NULL;
  if (ioctl(v->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) return NULL;
  v->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (v->mem == MAP_FAILED) return NULL;
  memcpy(v->mem + LOAD_ADDR, guest, len);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
      .userspace_addr = (uint64_t)(uintptr_t)v->mem};
  if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return NULL;
  if ((v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0)) < 0) return NULL;
  v->run_size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  if (v->run == MAP_FAILED) return NULL;
  struct kvm_sregs sregs;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &sregs) < 0) return NULL;
  sregs.cs.selector = 0;
  sregs.cs.base = 0;
  if (ioctl(v->vcpu, KVM_SET_SREGS, &sregs) < 0) return NULL;
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = LOAD_ADDR;
  regs.rsp = 0x8000;
  regs.rflags = 2;
  if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) return NULL;
  return v;
}

/* Runs the guest for `exits` exits of the measured kind; returns ns per exit, < 0 on error. */
double native_round(struct native_vm *v, int exits) {
  struct kvm_interrupt irq = {.irq = IRQ_VECTOR};
  struct kvm_run *run = v->run;
  double t0 = now_ns();
  for (int i = 0; i < exits;) {
    if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    switch (run->exit_reason) {
      case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        for (uint32_t k = 0; k < run->io.count; k++) {
          device_last = data[k * run->io.size];
          device_count++;
        }
        break;
      }
      case KVM_EXIT_MMIO:
        device_last = run->mmio.data[0];
        device_count++;
        break;
      case KVM_EXIT_HLT:
        if (ioctl(v->vcpu, KVM_INTERRUPT, &irq) < 0) return -2;
        break;
      case KVM_EXIT_IRQ_WINDOW_OPEN:
        break;
      default:
        return -3 - (double)run->exit_reason;
    }
    if ((int)run->exit_reason == v->want) i++;
  }
  return (now_ns() - t0) / exits;
}

/* Releases the VM. */
void native_close(struct native_vm *v) {
  if (!v) return;
  if (v->run && v->run != MAP_FAILED) munmap(v->run, v->run_size);
  if (v->mem && v->mem != MAP_FAILED) munmap(v->mem, MEM_SIZE);
  close(v->vcpu);
  close(v->vm);
  close(v->kvm);
  free(v);
}

#ifndef EXITS_NATIVE_LIB
int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s <pio|mmio|hlt> <guest.bin> <exits> <rounds>\n", argv[0]);
    return 2;
  }
  int mode = strcmp(argv[1], "pio") == 0 ? MODE_PIO
           : strcmp(argv[1], "mmio") == 0 ? MODE_MMIO : MODE_HLT;
  static uint8_t guest[MEM_SIZE];
  FILE *f = fopen(argv[2], "rb");
  if (!f) { perror("guest image"); return 1; }
  int len = (int)fread(guest, 1, sizeof guest - LOAD_ADDR, f);
  fclose(f);
  struct native_vm *v = native_open(mode, guest, len);
  if (!v) { perror("native_open"); return 1; }
  double best = 1e18;
  for (long r = 0; r < atol(argv[4]); r++) {
    double per = native_round(v, atoi(argv[3]));
    if (per < 0) { fprintf(stderr, "native_round failed (%.0f)\n", per); return 1; }
    if (per < best) best = per;
  }
  printf("%.1f\n", best);
  native_close(v);
  return 0;
}
#endif
