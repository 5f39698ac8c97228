/*
 * A Multiboot kernel in C, built the usual freestanding way (build_linked.sh):
 *   gcc -m32 -ffreestanding -nostdlib ... -c c_multiboot.c
 *   ld -m elf_i386 -Ttext 0x100000 -o c_multiboot.elf c_multiboot.o
 * GNU ld's default layout gives it a headers-only PT_LOAD at 0xFF000 (the page below .text,
 * inside the PC's reserved area below 1 MiB), then .text, .rodata, .data and .bss segments.
 * It prints the same checks as ld_multiboot.asm over COM1 and exits through the debug-exit
 * port with status 33 (35 when not entered by a Multiboot loader).
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#define MB_BOOT_MAGIC 0x2BADB002u
#define MBI_F_MEM (1u << 0)
#define MBI_F_CMDLINE (1u << 2)
#define MBI_F_MMAP (1u << 6)
#define COM1 0x3F8
#define DEBUG_EXIT 0xF4
#define DATA_VALUE 0x600DDA7Au

/* The Multiboot header (magic, flags 3: page-aligned modules, memory information; checksum)
 * and the entry point, first in .text so within the file's first 8 KiB. */
__asm__(".section .text\n"
        ".align 4\n"
        "multiboot_header:\n"
        "  .long 0x1BADB002, 3, -(0x1BADB002 + 3)\n"
        ".globl _start\n"
        "_start:\n"
        "  mov $boot_stack + 4096, %esp\n"
        "  push %ebx\n"
        "  push %eax\n"
        "  call kmain\n"
        "1: cli\n"
        "  hlt\n"
        "  jmp 1b\n");

extern const u8 multiboot_header[];
u8 boot_stack[4096] __attribute__((aligned(16)));
static volatile u32 bss_check[1024];
static volatile u32 data_value = DATA_VALUE;

struct multiboot_info {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  u32 syms[4];
  u32 mmap_length, mmap_addr;
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static void putc(char c) {
  while (!(inb(COM1 + 5) & 0x20)) {
  }
  outb(COM1, (u8)c);
}
static void puts(const char *s) {
  while (*s) putc(*s++);
}
static void puthex(u32 v) {
  puts("0x");
  for (int i = 28; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 0xF]);
}
static void putdec(u32 v) {
  char buf[12];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) putc(buf[--n]);
}

/* The type of the mmap entry that holds `addr` (below 4 GiB), or 0. */
static u32 mmap_type(const struct multiboot_info *mbi, u32 addr) {
  if (!(mbi->flags & MBI_F_MMAP)) return 0;
  for (u32 at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length;) {
    const volatile u32 *e = (const volatile u32 *)at;
    /* size, base_addr (lo, hi), length (lo, hi), type */
    if (e[2] == 0 && addr >= e[1] && (e[4] != 0 || addr - e[1] < e[3])) return e[5];
    at += e[0] + 4;
  }
  return 0;
}

static void put_type(u32 type) {
  if (type) {
    puts("type ");
    putdec(type);
    puts("\n");
  } else {
    puts("none\n");
  }
}

static int rsdp_in_bios_area(void) {
  for (u32 at = 0xE0000; at < 0x100000; at += 16) {
    const volatile u8 *p = (const volatile u8 *)at;
    if (p[0] != 'R' || p[1] != 'S' || p[2] != 'D' || p[3] != ' ' || p[4] != 'P' || p[5] != 'T' ||
        p[6] != 'R' || p[7] != ' ')
      continue;
    u8 sum = 0;
    for (int i = 0; i < 20; i++) sum = (u8)(sum + p[i]);
    if (sum == 0) return 1;
  }
  return 0;
}

void kmain(u32 magic, const struct multiboot_info *mbi) {
  outb(COM1 + 1, 0x00); /* 115200 8N1, interrupts off */
  outb(COM1 + 3, 0x80);
  outb(COM1 + 0, 0x01);
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03);
  puts("hello from a C Multiboot kernel\n");
  puts("magic: ");
  puthex(magic);
  puts("\n");
  if (magic != MB_BOOT_MAGIC) {
    puts("not loaded by a Multiboot loader\n");
    outb(DEBUG_EXIT, 0x11);
    return;
  }
  if (mbi->flags & MBI_F_MEM) {
    puts("mem_lower: ");
    putdec(mbi->mem_lower);
    puts(" KiB\nmem_upper: ~");
    putdec((mbi->mem_upper + 512) >> 10); /* MiB, rounded */
    puts(" MiB\n");
  }
  if (mbi->flags & MBI_F_CMDLINE) {
    const char *args = (const char *)mbi->cmdline;
    while (*args && *args != ' ') args++; /* skip the kernel path */
    if (*args) args++;
    puts("arguments: \"");
    puts(args);
    puts("\"\n");
  }
  u32 headers = ((u32)multiboot_header & ~0xFFFu) - 0x1000;
  puts("page below .text at ");
  puthex(headers);
  puts(*(const volatile u32 *)headers == 0x464C457Fu ? ": ELF header\n" : ": no ELF header\n");
  puts("its mmap entry: ");
  put_type(mmap_type(mbi, headers));
  puts(".text's mmap entry: ");
  put_type(mmap_type(mbi, (u32)multiboot_header));
  puts(data_value == DATA_VALUE ? ".data: loaded\n" : ".data: not loaded\n");
  u32 dirty = 0;
  for (int i = 0; i < 1024; i++) dirty |= bss_check[i];
  puts(dirty ? ".bss: not zeroed\n" : ".bss: zeroed\n");
  puts("ACPI RSDP in the BIOS area: ");
  puts(rsdp_in_bios_area() ? "found\n" : "missing\n");
  puts("done\n");
  outb(DEBUG_EXIT, 0x10);
}
