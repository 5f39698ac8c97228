; Real-mode port I/O guest for tests/core/kvm/backend_test.ts. Loaded at 0x1000, CS=DS=ES=0.
; Port 0x80 records writes, 0x81 answers reads, 0x82 takes a string, 0xf4 ends the run.
bits 16
org 0x1000
start:
    mov al, 0x42
    out 0x80, al            ; byte out
    mov ax, 0x1234
    out 0x80, ax            ; word out
    mov eax, 0xdeadbeef
    out 0x80, eax           ; dword out
    in al, 0x81             ; reads come back through port 0x80
    out 0x80, al
    in ax, 0x81
    out 0x80, ax
    in eax, 0x81
    out 0x80, eax
    cld
    mov si, msg
    mov cx, msg_len
    mov dx, 0x82
    rep outsb               ; string out: one exit may carry several bytes
    mov di, 0x2000
    mov cx, 3
    mov dx, 0x81
    rep insw                ; string in: three words land at 0x2000
    xor al, al
    out 0xf4, al            ; done
    cli
    hlt
msg:    db "hello"
msg_len equ $ - msg
