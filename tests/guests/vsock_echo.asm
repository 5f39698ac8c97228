; vsock_echo: a tiny static x86-64 Linux program for the vsock tests (raw syscalls, no libc;
; busybox has no AF_VSOCK tool). Build: nasm -f bin -o vsock_echo vsock_echo.asm (the ELF
; header is written out below, so no linker is needed).
;
;   vsock_echo listen PORT        accept one connection on vsock port PORT, echo what it
;                                 reads until the end of stream, print "echoed N"
;   vsock_echo connect PORT TEXT  connect to the host (CID 2) port PORT, send "TEXT\n", print
;                                 what comes back until the end of stream; when the connection
;                                 fails, print "connect: errno N" and exit 1

BITS 64
ORG 0x400000

AF_VSOCK        equ 40
SOCK_STREAM     equ 1
VMADDR_CID_ANY  equ 0xffffffff
VMADDR_CID_HOST equ 2
SYS_READ        equ 0
SYS_WRITE       equ 1
SYS_CLOSE       equ 3
SYS_SOCKET      equ 41
SYS_CONNECT     equ 42
SYS_ACCEPT      equ 43
SYS_BIND        equ 49
SYS_LISTEN      equ 50
SYS_EXIT        equ 60
BUF_SIZE        equ 65536

ehdr:                                   ; Elf64_Ehdr
    db 0x7f, "ELF", 2, 1, 1, 0          ; 64-bit, little-endian, version 1, System V
    times 8 db 0
    dw 2                                ; e_type: ET_EXEC
    dw 0x3e                             ; e_machine: x86-64
    dd 1                                ; e_version
    dq _start                           ; e_entry
    dq phdr - ehdr                      ; e_phoff
    dq 0                                ; e_shoff
    dd 0                                ; e_flags
    dw EHDR_SIZE                        ; e_ehsize
    dw PHDR_SIZE                        ; e_phentsize
    dw 1                                ; e_phnum
    dw 0, 0, 0                          ; e_shentsize, e_shnum, e_shstrndx
EHDR_SIZE equ $ - ehdr

phdr:                                   ; Elf64_Phdr: one RWX PT_LOAD of the file, plus bss
    dd 1                                ; p_type: PT_LOAD
    dd 7                                ; p_flags: R W X
    dq 0                                ; p_offset
    dq ehdr                             ; p_vaddr
    dq ehdr                             ; p_paddr
    dq FILE_SIZE                        ; p_filesz
    dq MEM_SIZE                         ; p_memsz
    dq 0x1000                           ; p_align
PHDR_SIZE equ $ - phdr

_start:
    mov rbx, rsp                        ; [rbx] argc, [rbx + 8] argv[0], ...
    cmp qword [rbx], 3
    jb usage
    mov rdi, [rbx + 24]                 ; argv[2]: the port
    call parse_uint
    mov r12, rax
    mov rsi, [rbx + 16]                 ; argv[1]: the mode
    cmp byte [rsi], 'l'
    je do_listen
    cmp byte [rsi], 'c'
    je do_connect
usage:
    mov edi, 2
    mov esi, msg_usage
    mov edx, msg_usage_len
    call write_all
    mov edi, 2
    jmp exit

; --- listen PORT: accept one connection and echo it -------------------------------------------
do_listen:
    mov [addr_port], r12d
    mov dword [addr_cid], VMADDR_CID_ANY
    call make_socket
    mov eax, SYS_BIND
    mov rdi, r13
    mov esi, addr
    mov edx, 16
    syscall
    test rax, rax
    js fail
    mov eax, SYS_LISTEN
    mov rdi, r13
    mov esi, 1
    syscall
    test rax, rax
    js fail
    mov esi, msg_listening
    mov edx, msg_listening_len
    call print
    mov eax, SYS_ACCEPT
    mov rdi, r13
    xor esi, esi
    xor edx, edx
    syscall
    test rax, rax
    js fail
    mov r14, rax                        ; the connection
    xor r15d, r15d                      ; bytes echoed
.loop:
    mov eax, SYS_READ
    mov rdi, r14
    mov esi, buf
    mov edx, BUF_SIZE
    syscall
    test rax, rax
    jle .done                           ; end of stream (or an error: the count says)
    mov r12, rax                        ; (the port is bound: r12 is free)
    mov rdx, rax
    mov rdi, r14
    mov esi, buf
    call write_all
    test rax, rax
    js .done
    add r15, r12
    jmp .loop
.done:
    mov eax, SYS_CLOSE
    mov rdi, r14
    syscall
    mov esi, msg_echoed
    mov edx, msg_echoed_len
    call print
    mov rax, r15
    call print_num
    call print_nl
    xor edi, edi
    jmp exit

; --- connect PORT TEXT: send a line to the host, print the answer -------------------------------
do_connect:
    cmp qword [rbx], 4
    jb usage
    mov [addr_port], r12d
    mov dword [addr_cid], VMADDR_CID_HOST
    call make_socket
    mov eax, SYS_CONNECT
    mov rdi, r13
    mov esi, addr
    mov edx, 16
    syscall
    test rax, rax
    js .refused
    mov rsi, [rbx + 32]                 ; argv[3]: the text
    call strlen
    mov rdi, r13
    call write_all
    mov rdi, r13
    mov esi, nl
    mov edx, 1
    call write_all
.loop:
    mov eax, SYS_READ
    mov rdi, r13
    mov esi, buf
    mov edx, BUF_SIZE
    syscall
    test rax, rax
    jle .done
    mov rdx, rax
    mov esi, buf
    call print
    jmp .loop
.done:
    xor edi, edi
    jmp exit
.refused:
    neg rax
    mov r15, rax
    mov esi, msg_connect
    mov edx, msg_connect_len
    call print
    mov rax, r15
    call print_num
    call print_nl
    mov edi, 1
    jmp exit

; --- helpers ------------------------------------------------------------------------------------
make_socket:                            ; r13 = socket(AF_VSOCK, SOCK_STREAM, 0), or fail
    mov eax, SYS_SOCKET
    mov edi, AF_VSOCK
    mov esi, SOCK_STREAM
    xor edx, edx
    syscall
    test rax, rax
    js fail
    mov r13, rax
    ret

fail:                                   ; rax = -errno: "error: errno N", exit 1
    neg rax
    mov r15, rax
    mov esi, msg_error
    mov edx, msg_error_len
    call print
    mov rax, r15
    call print_num
    call print_nl
    mov edi, 1
exit:
    mov eax, SYS_EXIT
    syscall

parse_uint:                             ; rax = the decimal number at [rdi]
    xor eax, eax
.next:
    movzx ecx, byte [rdi]
    sub ecx, '0'
    cmp ecx, 9
    ja .done
    imul rax, rax, 10
    add rax, rcx
    inc rdi
    jmp .next
.done:
    ret

strlen:                                 ; rdx = length of the string at rsi
    xor edx, edx
.next:
    cmp byte [rsi + rdx], 0
    je .done
    inc rdx
    jmp .next
.done:
    ret

print:                                  ; rsi, rdx to stdout
    mov edi, 1
write_all:                              ; all rdx bytes at rsi to fd rdi; rax < 0 on error
    mov r8, rdi
    mov r9, rsi
    mov r10, rdx
.next:
    test r10, r10
    jz .ok
    mov eax, SYS_WRITE
    mov rdi, r8
    mov rsi, r9
    mov rdx, r10
    syscall
    test rax, rax
    js .out
    jz .ok                              ; nothing written: give up quietly
    add r9, rax
    sub r10, rax
    jmp .next
.ok:
    xor eax, eax
.out:
    ret

print_nl:
    mov esi, nl
    mov edx, 1
    jmp print

print_num:                              ; rax in decimal to stdout
    mov rdi, numbuf_end
    mov ecx, 10
.next:
    xor edx, edx
    div rcx
    add dl, '0'
    dec rdi
    mov [rdi], dl
    test rax, rax
    jnz .next
    mov rsi, rdi
    mov rdx, numbuf_end
    sub rdx, rdi
    jmp print

addr:                                   ; struct sockaddr_vm
    dw AF_VSOCK                         ; svm_family
    dw 0                                ; svm_reserved1
addr_port:
    dd 0                                ; svm_port
addr_cid:
    dd 0                                ; svm_cid
    db 0, 0, 0, 0                       ; svm_flags, svm_zero

nl:             db 10
msg_usage:      db "usage: vsock_echo listen PORT | vsock_echo connect PORT TEXT", 10
msg_usage_len   equ $ - msg_usage
msg_listening:  db "listening", 10
msg_listening_len equ $ - msg_listening
msg_echoed:     db "echoed "
msg_echoed_len  equ $ - msg_echoed
msg_connect:    db "connect: errno "
msg_connect_len equ $ - msg_connect
msg_error:      db "error: errno "
msg_error_len   equ $ - msg_error

file_end:
FILE_SIZE equ file_end - ehdr

absolute file_end
buf:            resb BUF_SIZE
numbuf:         resb 24
numbuf_end:
bss_end:
MEM_SIZE equ bss_end - ehdr
