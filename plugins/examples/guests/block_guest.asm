; Uses the block_dev example plugin: prints the disk's capacity, reads sectors 0 and 1 into RAM by
; DMA and prints the text each starts with, then checks that a write is refused on a read-only
; disk (status 4) and that a read past the end is refused (status 2). Resets (status 0) on
; success, debug-exit 1 (status 3) otherwise.
; Build: nasm -f bin -o block_guest.bin block_guest.asm
bits 16
org 0x7c00
BLK equ 0x5d0
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, label_capacity
    call print_str
    mov dx, BLK + 20
    in eax, dx
    mov [capacity], eax
    call print_hex32
    mov al, 10
    call print_char

    xor eax, eax            ; sectors 0 and 1 -> 0x8000
    mov ebx, 0x8000
    mov ecx, 2
    mov edi, 1
    call blk_command
    cmp al, 1
    jne fail_vm
    mov si, label_s0
    call print_str
    mov si, 0x8000
    call print_str
    mov al, 10
    call print_char
    mov si, label_s1
    call print_str
    mov si, 0x8200
    call print_str
    mov al, 10
    call print_char

    xor eax, eax            ; write sector 0 from 0x8000: read-only disk refuses
    mov ebx, 0x8000
    mov ecx, 1
    mov edi, 2
    call blk_command
    cmp al, 4
    jne fail_vm
    mov si, label_ro
    call print_str

    mov eax, [capacity]     ; one sector past the end
    mov ebx, 0x8000
    mov ecx, 1
    mov edi, 1
    call blk_command
    cmp al, 2
    jne fail_vm
    mov si, label_end
    call print_str
    jmp reset_vm

blk_command:                ; EAX sector, EBX address, ECX count, EDI command; AL = status
    mov dx, BLK
    out dx, eax
    mov eax, ebx
    mov dx, BLK + 4
    out dx, eax
    mov eax, ecx
    mov dx, BLK + 8
    out dx, eax
    mov eax, edi
    mov dx, BLK + 12
    out dx, eax
    mov dx, BLK + 16
    in eax, dx
    ret

%include "serial.inc"
capacity: dd 0
label_capacity: db "capacity: ", 0
label_s0: db "sector 0: ", 0
label_s1: db "sector 1: ", 0
label_ro: db "write refused: read-only", 10, 0
label_end: db "read past the end refused", 10, 0
