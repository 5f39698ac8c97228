; Benchmark guest: an endless loop of 1-byte OUTs to port 0x80.
bits 16
org 0x1000
.l: out 0x80, al
    jmp .l
