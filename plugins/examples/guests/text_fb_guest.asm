; Uses the text_fb example plugin mapped at 0x100000 (run with --mem 1M so that is not RAM):
; writes two lines of text into the framebuffer through ES = 0xFFFF (0xFFFF0 + 0x10 = 0x100000),
; asks the device to render, and says so on the serial port. Resets (status 0).
; Build: nasm -f bin -o text_fb_guest.bin text_fb_guest.asm
bits 16
org 0x7c00
FB_OFFSET equ 0x10          ; ES:0x10 = 0x100000
CONTROL equ 4000
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov ax, 0xffff
    mov es, ax
    cld
    mov di, FB_OFFSET
    mov si, line0
    call put_line
    mov di, FB_OFFSET + 160 * 2     ; row 2
    mov si, line2
    call put_line
    mov dword [es:FB_OFFSET + CONTROL], 1
    mov si, label_done
    call print_str
    jmp reset_vm

put_line:                   ; DS:SI text -> ES:DI cells, attribute 0x07
    mov ah, 0x07
.next:
    lodsb
    test al, al
    jz .done
    stosw
    jmp .next
.done:
    ret

%include "serial.inc"
line0: db "denovisor text framebuffer", 0
line2: db "written by a real-mode guest over MMIO", 0
label_done: db "text-fb: rendered", 10, 0
