; Lifecycle bench guest (bench/lifecycle_group.ts): fills conventional memory from 0x10000 to
; 0x9FFFF (each 64 KiB segment with its segment number, so the snapshot carries 576 KiB of
; non-zero pages), then prints ".\n" through the UART once per millisecond of VM time (PIT
; channel 0 in mode 2 with a 1 ms period, polled with latch commands, interrupts off), forever,
; so a restored guest is seen running by its next line. A boot sector: denovisor loads it as a
; flat image at 0x7C00, QEMU's BIOS boots it from a raw IDE disk.
; Build: nasm -f bin -o lifecycle.bin lifecycle.asm
bits 16
org 0x7c00

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    cld
    mov bx, 0x1000          ; segment being filled
.seg:
    mov es, bx
    xor di, di
    mov ax, bx
    mov cx, 0x8000          ; 64 KiB as words
    rep stosw
    add bx, 0x1000
    cmp bx, 0xa000
    jb .seg
    mov al, 0x34            ; channel 0, lobyte/hibyte, mode 2
    out 0x43, al
    mov al, 0xa9            ; 1193 = 0x04A9 ticks of 1.193182 MHz = 1 ms
    out 0x40, al
    mov al, 0x04
    out 0x40, al
.line:
    mov dx, 0x3f8
    mov al, '.'
    out dx, al
    mov al, 10
    out dx, al
    call readpit
    mov di, ax
.poll:                      ; until the count goes up (a reload)
    call readpit
    cmp ax, di
    mov di, ax              ; mov keeps the flags of the cmp
    jbe .poll
    jmp .line

; ax = channel 0's current count.
readpit:
    mov al, 0x00            ; latch channel 0
    out 0x43, al
    in al, 0x40
    mov ah, al
    in al, 0x40
    xchg al, ah
    ret

    times 510 - ($ - $$) db 0
    dw 0xaa55
