; Prints what CPUID tells a guest: the vendor string, the leaf-1 signature and feature words,
; the highest leaves and the brand string, then exits through port 0xF4. The same output on
; every backend means KVM and the interpreter present the same CPU model.
bits 16
org 0x7c00
start:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    xor eax, eax
    cpuid
    mov [buf], ebx
    mov [buf + 4], edx
    mov [buf + 8], ecx
    mov [out], eax                  ; highest basic leaf
    mov si, buf
    call puts
    mov eax, [out]
    call hex32
    mov eax, 1
    cpuid
    mov [out], eax
    mov [out + 4], ecx
    mov [out + 8], edx
    call out3                       ; signature, leaf 1 ECX and EDX
    mov eax, 0x80000000
    cpuid
    call hex32                      ; highest extended leaf
    mov eax, 0x80000001
    cpuid
    mov [out], eax
    mov [out + 4], ecx
    mov [out + 8], edx
    call out3
    mov ebp, 0x80000002
.brand:
    mov eax, ebp
    cpuid
    mov [buf], eax
    mov [buf + 4], ebx
    mov [buf + 8], ecx
    mov [buf + 12], edx
    mov byte [buf + 16], 0
    mov si, buf
    call puts
    inc ebp
    cmp ebp, 0x80000005
    jne .brand
    mov al, 10
    call putc
    mov al, 0
    out 0xf4, al
    hlt

; Prints the three dwords at `out`.
out3:
    mov eax, [out]
    call hex32
    mov eax, [out + 4]
    call hex32
    mov eax, [out + 8]
    call hex32
    ret

; Prints the NUL-terminated string at SI (at most 16 bytes are written per call).
puts:
    lodsb
    test al, al
    jz .done
    call putc
    jmp puts
.done:
    ret

; Prints " " and EAX as eight hex digits.
hex32:
    mov ebx, eax
    mov al, ' '
    call putc
    mov cx, 8
.digit:
    rol ebx, 4
    mov al, bl
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    call putc
    loop .digit
    ret

putc:
    push dx
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret

buf: times 20 db 0
out: times 3 dd 0
