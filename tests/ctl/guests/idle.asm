; ctl test guest: runs until told to stop, halted nearly all the time. It prints "up" once,
; then a "." on every 18th tick of PIT channel 0 (the slowest rate, 18.2 Hz: one dot a
; second), sleeping in HLT between ticks, so ten of them cost little host CPU. Any keyboard
; byte (Ctrl-Alt-Del through SendCtrlAltDel is i8042 data on IRQ 1) resets the PC, which ends
; the VMM with status 0. Loaded at 0x7C00 in real mode (a flat image).
; Build: nasm -f bin -o idle.bin idle.asm
bits 16
org 0x7c00

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov word [0x08 * 4], irq0       ; IVT: IRQ 0 -> vector 8, IRQ 1 -> vector 9
    mov word [0x08 * 4 + 2], 0
    mov word [0x09 * 4], irq1
    mov word [0x09 * 4 + 2], 0
    mov al, 0x11                    ; PICs: ICW1 (edge, cascade, ICW4)
    out 0x20, al
    out 0xa0, al
    mov al, 0x08                    ; ICW2: master at vector 8, slave at 0x70
    out 0x21, al
    mov al, 0x70
    out 0xa1, al
    mov al, 0x04                    ; ICW3
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01                    ; ICW4: 8086 mode
    out 0x21, al
    out 0xa1, al
    mov al, 0xfc                    ; unmask IRQ 0 and 1 only
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34                    ; PIT channel 0, lobyte/hibyte, mode 2
    out 0x43, al
    xor al, al                      ; count 0 = 65536: 18.2 Hz
    out 0x40, al
    out 0x40, al
    mov si, hello
    call puts
    sti
.idle:
    hlt
    jmp .idle

irq0:
    push ax
    push dx
    inc byte [ticks]
    cmp byte [ticks], 18
    jb .eoi
    mov byte [ticks], 0
    mov dx, 0x3f8
    mov al, '.'
    out dx, al
.eoi:
    mov al, 0x20
    out 0x20, al
    pop dx
    pop ax
    iret

irq1:
    in al, 0x60                     ; a key: reset the PC
    mov al, 0xfe
    out 0x64, al
    hlt
    jmp irq1

puts:
    mov dx, 0x3f8
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    ret

hello: db "up", 10, 0
ticks: db 0
