; Boot sector for running a flat guest image under a BIOS (QEMU's SeaBIOS, for the interp bench
; baseline): relocates itself to 0x600, reads the image that follows it on the disk to 0x7C00
; with INT 13h extensions, stores the repetition count (patched in at `reps`) at 0x500, and
; jumps to 0000:7C00 as a flat guest expects.
; Build: nasm -f bin -o disk_loader.bin disk_loader.asm
bits 16
org 0x600

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x600
    mov si, 0x7c00              ; relocate: the image will be read over 0x7C00
    mov di, 0x600
    mov cx, 256
    rep movsw
    jmp 0:relocated
relocated:
    mov [drive], dl
    mov si, dap
    mov ah, 0x42                ; extended read
    mov dl, [drive]
    int 0x13
    jc fail
    mov eax, [reps]
    mov [0x500], eax
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    xor edi, edi
    jmp 0:0x7c00
fail:
    mov al, 0x7f                ; debug-exit: status 0xff tells the bench the read failed
    out 0xf4, al
    hlt

drive: db 0
align 4
dap:
    db 16, 0
sectors: dw 8                   ; patched: image size in sectors
    dw 0x7c00, 0                ; buffer 0000:7C00
    dq 1                        ; from LBA 1
reps: dd 1                      ; patched: repetition count

times 510 - ($ - $$) db 0
    dw 0xaa55
