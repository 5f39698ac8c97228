; Snapshot test guest with interrupts (real mode, flat, loaded and entered at 0000:7C00):
; programs the 8259 PIC pair (IRQ0 at vector 0x20, only IRQ0 unmasked) and PIT channel 0 in
; mode 2 with a 2 ms period, then sleeps in HLT; the IRQ0 handler counts ticks in RAM, and every
; 5th tick the main loop prints "tick NN" through the UART. After 40 lines it exits through the
; debug-exit port with 0 (status 1). A snapshot taken while it sleeps must carry the halted
; vCPU, the PIC's and PIT's state and the armed timer, or the restored guest hangs or skips.
; Build: nasm -f bin -o ticker.bin ticker.asm
bits 16
org 0x7c00
LINES equ 40
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov word [0x20 * 4], irq0   ; IVT entry for vector 0x20
    mov word [0x20 * 4 + 2], 0
    ; PIC: ICW1 (edge, cascade, ICW4), ICW2 (bases 0x20/0x28), ICW3, ICW4 (8086 mode)
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    mov al, 0xfe                ; unmask IRQ0 only
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    ; PIT channel 0, lobyte/hibyte, mode 2, 2386 ticks of 1.193182 MHz = 2 ms
    mov al, 0x34
    out 0x43, al
    mov al, 0x52
    out 0x40, al
    mov al, 0x09
    out 0x40, al
    xor bx, bx                  ; lines printed
    sti
.wait:
    hlt
    cmp word [ticks], 5
    jb .wait
    sub word [ticks], 5
    mov si, msg
    call puts
    mov ax, bx
    mov cl, 10
    div cl
    add ax, 0x3030
    push ax
    call putc                   ; tens (AL)
    pop ax
    mov al, ah
    call putc                   ; ones
    mov al, 10
    call putc
    inc bx
    cmp bx, LINES
    jb .wait
    cli
    mov al, 0
    out 0xf4, al
.halt:
    hlt
    jmp .halt

irq0:
    inc word [cs:ticks]
    push ax
    mov al, 0x20                ; EOI
    out 0x20, al
    pop ax
    iret

putc:
    push dx
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret

puts:
    lodsb
    test al, al
    jz .done
    call putc
    jmp puts
.done:
    ret

msg: db "tick ", 0
ticks: dw 0
