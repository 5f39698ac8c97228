; A Multiboot kernel built the way most are: `nasm -f elf32`, then GNU ld with its default linker
; script (build_linked.sh). ld's default layout (-z separate-code, the x86 default since binutils
; 2.31) starts with a read-only PT_LOAD that holds only the ELF and program headers, one page
; below .text: at 0xFF000, inside the PC's reserved area below 1 MiB, with `-Ttext 0x100000`
; (ld_multiboot.elf); at 0x8048000 with no options at all (ld_multiboot_default.elf, .text at
; 0x8049000). .rodata, .data and .bss get PT_LOADs of their own.
;
; QEMU's loader copies every segment, that page too. This kernel prints what mb_report.inc's
; kernels print, then checks its own load: the ELF header is in the page below .text, the memory
; map reports that page as QEMU does (reserved below 1 MiB, RAM above) and .text's page as RAM,
; .data holds its value, .bss is zero, and an ACPI RSDP is still in the BIOS area. It exits
; through the debug-exit port with status 33.

bits 32
MB_MAGIC        equ 0x1BADB002  ; Multiboot header magic
MB_FLAGS        equ 0x00000003  ; bit 0: page-align modules, bit 1: memory information wanted
MB_BOOT_MAGIC   equ 0x2BADB002  ; what a Multiboot loader leaves in EAX
MBI_FLAGS       equ 0           ; multiboot_info offsets (specification section 3.3)
MBI_MEM_LOWER   equ 4
MBI_MEM_UPPER   equ 8
MBI_CMDLINE     equ 16
MBI_MMAP_LENGTH equ 44
MBI_MMAP_ADDR   equ 48
MBI_F_MEM       equ 1 << 0
MBI_F_CMDLINE   equ 1 << 2
MBI_F_MMAP      equ 1 << 6
ELF_MAGIC       equ 0x464C457F  ; "\x7FELF"
DATA_VALUE      equ 0x600DDA7A  ; what .data holds
BSS_BYTES       equ 4096        ; the zero-checked part of .bss
BIOS_AREA       equ 0xE0000     ; guests scan [0xE0000, 1 MiB) for the RSDP on 16-byte steps
EXIT_OK         equ 0x10        ; debug-exit value on success: status (0x10 << 1) | 1 = 33
EXIT_BAD_MAGIC  equ 0x11        ; status 35

section .text
align 4
mb_header:                      ; first in .text, so within the file's first 8 KiB
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)

global _start
_start:
    mov esp, stack_top
    mov edi, eax                ; keep the magic; EBX (multiboot_info) stays put throughout
    call uart_init32
    mov esi, banner
    call puts32

    mov esi, s_magic
    call puts32
    mov eax, edi
    call puthex32
    call newline
    cmp edi, MB_BOOT_MAGIC
    jne .bad_magic

    mov ebp, [ebx + MBI_FLAGS]
    test ebp, MBI_F_MEM
    jz .no_mem
    mov esi, s_mem_lower
    call puts32
    mov eax, [ebx + MBI_MEM_LOWER]
    call putdec32
    mov esi, s_kib
    call puts32
    mov esi, s_mem_upper        ; in MiB, rounded: QEMU's firmware keeps 128 KiB of the top
    call puts32
    mov eax, [ebx + MBI_MEM_UPPER]
    add eax, 512
    shr eax, 10
    call putdec32
    mov esi, s_mib
    call puts32
.no_mem:

    test ebp, MBI_F_CMDLINE
    jz .no_cmdline
    mov esi, s_args             ; what follows the first word (the kernel path)
    call puts32
    mov esi, [ebx + MBI_CMDLINE]
.skip_path:
    lodsb
    test al, al
    jz .args_end
    cmp al, ' '
    jne .skip_path
    call puts32
.args_end:
    mov al, '"'
    call putc32
    call newline
.no_cmdline:

    ; The page below .text holds the ELF header (ld's headers-only segment).
    mov esi, s_headers
    call puts32
    mov eax, mb_header
    and eax, ~0xFFF
    sub eax, 0x1000
    call puthex32
    mov esi, s_elf
    cmp dword [eax], ELF_MAGIC
    je .headers_said
    mov esi, s_no_elf
.headers_said:
    call puts32

    mov esi, s_headers_map
    call puts32
    call mmap_type              ; EAX is still the headers page
    call put_type
    mov esi, s_text_map
    call puts32
    mov eax, mb_header
    call mmap_type
    call put_type

    mov esi, s_data
    call puts32
    mov esi, s_loaded
    cmp dword [data_value], DATA_VALUE
    je .data_said
    mov esi, s_not_loaded
.data_said:
    call puts32

    mov esi, s_bss
    call puts32
    mov esi, bss_check
    mov ecx, BSS_BYTES / 4
.bss_next:
    lodsd
    test eax, eax
    jnz .bss_dirty
    loop .bss_next
    mov esi, s_zeroed
    jmp .bss_said
.bss_dirty:
    mov esi, s_not_zeroed
.bss_said:
    call puts32

    mov esi, s_rsdp
    call puts32
    call find_rsdp
    mov esi, s_found
    test eax, eax
    jnz .rsdp_said
    mov esi, s_missing
.rsdp_said:
    call puts32

    mov esi, s_done
    call puts32
    mov al, EXIT_OK
    out DEBUG_EXIT, al
    jmp halt

.bad_magic:
    mov esi, s_bad_magic
    call puts32
    mov al, EXIT_BAD_MAGIC
    out DEBUG_EXIT, al
halt:
    cli
    hlt
    jmp halt

; mmap_type: EAX = an address below 4 GiB; returns EAX = the type of the multiboot_info mmap
; entry that holds it, or 0 when none does (or there is no mmap). Keeps every other register.
mmap_type:
    push ecx
    push edx
    push esi
    mov esi, eax
    xor eax, eax
    test dword [ebx + MBI_FLAGS], MBI_F_MMAP
    jz .done
    mov ecx, [ebx + MBI_MMAP_ADDR]
    mov edx, ecx
    add edx, [ebx + MBI_MMAP_LENGTH]
.entry:
    cmp ecx, edx
    jae .none
    cmp dword [ecx + 8], 0      ; base_addr above 4 GiB: cannot hold it
    jne .skip
    mov eax, esi
    sub eax, [ecx + 4]          ; address - base_addr
    jb .skip
    cmp dword [ecx + 16], 0     ; a length of 4 GiB or more holds everything from its base up
    jne .found
    cmp eax, [ecx + 12]
    jb .found
.skip:
    add ecx, [ecx]              ; size does not count itself
    add ecx, 4
    jmp .entry
.found:
    mov eax, [ecx + 20]
    jmp .done
.none:
    xor eax, eax
.done:
    pop esi
    pop edx
    pop ecx
    ret

; put_type: writes "type N" (or "none" for 0) and a line break.
put_type:
    test eax, eax
    jz .none
    push esi
    mov esi, s_type
    call puts32
    pop esi
    call putdec32
    jmp newline
.none:
    push esi
    mov esi, s_none
    call puts32
    pop esi
    ret

; find_rsdp: returns EAX = the first 16-byte-aligned "RSD PTR " with a valid checksum in the
; BIOS area [0xE0000, 1 MiB), or 0. Keeps every other register.
find_rsdp:
    push ecx
    push esi
    mov esi, BIOS_AREA
.try:
    cmp dword [esi], 'RSD '
    jne .next
    cmp dword [esi + 4], 'PTR '
    jne .next
    xor eax, eax
    xor ecx, ecx
.sum:
    add al, [esi + ecx]         ; the first 20 bytes sum to 0
    inc ecx
    cmp ecx, 20
    jb .sum
    test al, al
    jnz .next
    mov eax, esi
    jmp .out
.next:
    add esi, 16
    cmp esi, 0x100000
    jb .try
    xor eax, eax
.out:
    pop esi
    pop ecx
    ret

newline:
    push eax
    mov al, 10
    call putc32
    pop eax
    ret

%include "uart32.inc"

section .rodata
banner:       db "hello from an ld-linked Multiboot kernel", 10, 0
s_magic:      db "magic: ", 0
s_bad_magic:  db "not loaded by a Multiboot loader", 10, 0
s_mem_lower:  db "mem_lower: ", 0
s_mem_upper:  db "mem_upper: ~", 0
s_mib:        db " MiB", 10, 0
s_kib:        db " KiB", 10, 0
s_args:       db 'arguments: "', 0
s_headers:    db "page below .text at ", 0
s_elf:        db ": ELF header", 10, 0
s_no_elf:     db ": no ELF header", 10, 0
s_headers_map: db "its mmap entry: ", 0
s_text_map:   db ".text's mmap entry: ", 0
s_type:       db "type ", 0
s_none:       db "none", 10, 0
s_data:       db ".data: ", 0
s_loaded:     db "loaded", 10, 0
s_not_loaded: db "not loaded", 10, 0
s_bss:        db ".bss: ", 0
s_zeroed:     db "zeroed", 10, 0
s_not_zeroed: db "not zeroed", 10, 0
s_rsdp:       db "ACPI RSDP in the BIOS area: ", 0
s_found:      db "found", 10, 0
s_missing:    db "missing", 10, 0
s_done:       db "done", 10, 0

section .data
align 4
data_value:   dd DATA_VALUE

section .bss
alignb 16
bss_check:    resb BSS_BYTES
              resb 4096
stack_top:

section .note.GNU-stack noalloc noexec nowrite progbits
