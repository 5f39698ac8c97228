/**
 * Debian's Linux on the interpreter, live-migrated in the middle of a shell workload from one
 * denovisor process to another (issue 10, "Done means"): the source boots the guest, and once
 * the guest prints WORK-START, `PUT /migration/send` moves it over a unix: socket to a process
 * started with `--incoming`. The destination finishes the workload with the right result and
 * exits with poweroff's status; the source exits 0 and says where the VM went; WORK-DONE is
 * printed by the destination only, so the migration really landed mid-work.
 */

import { assertEquals, assertIncludes, assertTrue } from "../_assert.ts";
import { ROOT } from "../_run.ts";
import { request as api } from "../../core/ctl/http.ts";
import { busyboxInitramfs, DEFAULT_APPLETS } from "../../tools/guests/initramfs.ts";

const DIR = `${ROOT}.cache/guests/`;
const KERNEL = `${DIR}bzImage`, BUSYBOX = `${DIR}busybox`;
const present = [KERNEL, BUSYBOX].every((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!present) console.warn("note: Linux migration test skipped: run `deno task guests` first");

/**
 * Loop iterations: busybox sh on the interpreter does ~1,400 a second here, so the workload
 * runs ~20 s, and longer while the migration shares the vCPU with sending: the migration
 * (about a second) starts well inside it.
 */
const N = 30_000;
const SUM = N * (N + 1) / 2;

const INIT = `#!/bin/sh
mount -t proc proc /proc
echo WORK-START
i=0; s=0
while [ $i -lt ${N} ]; do i=$((i+1)); s=$((s+i)); done
echo "WORK-DONE $s"
poweroff -f
`;

/** A denovisor process whose stdout and stderr are kept, and can be waited on. */
class Proc {
  readonly child: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  stdout = "";
  stderr = "";
  exited = false;
  #waiters: (() => void)[] = [];

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "mod.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.child = child;
    const pump = async (s: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        this[into] += dec.decode(chunk, { stream: true });
        this.#wake();
      }
    };
    const out = pump(child.stdout, "stdout"), err = pump(child.stderr, "stderr");
    this.done = Promise.all([out, err, child.status]).then(([, , st]) => {
      this.exited = true;
      this.#wake();
      return st;
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `text` is in `stream`; throws if the process ends first or on timeout. */
  async waitFor(stream: "stdout" | "stderr", text: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this[stream].includes(text)) {
      if (this.exited) throw new Error(`no "${text}": the process ended${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${text}" after ${timeoutMs} ms${this.tail()}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  /** The exit status, killing the process after `timeoutMs`. */
  async status(timeoutMs: number): Promise<number> {
    const timer = setTimeout(() => this.kill(), timeoutMs);
    const st = await this.done;
    clearTimeout(timer);
    return st.code;
  }

  tail(): string {
    return `; stdout: ${JSON.stringify(this.stdout.slice(-1500))}; stderr: ${this.stderr}`;
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

Deno.test({
  name: "[interp] Linux live-migrated mid-workload finishes it on the destination",
  ignore: !present,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "dv-linux-migrate-" });
    let src: Proc | null = null, dst: Proc | null = null;
    try {
      const initrd = `${dir}/init.cpio.gz`;
      Deno.writeFileSync(
        initrd,
        await busyboxInitramfs(await Deno.readFile(BUSYBOX), {
          init: INIT,
          applets: DEFAULT_APPLETS,
        }),
      );
      const url = `unix:${dir}/migration.sock`, srcSock = `${dir}/src.sock`;
      dst = new Proc(["--incoming", url, "--backend", "interp"]);
      await dst.waitFor("stderr", `migration: waiting for the VM on ${url}`, 60_000);
      src = new Proc([
        ...["--api-sock", srcSock, "--backend", "interp", "--mem", "256M"],
        ...["--kernel", KERNEL, "--initrd", initrd, "--cmdline", "console=ttyS0 panic=-1 quiet"],
      ]);
      await src.waitFor("stdout", "WORK-START", 5 * 60_000);
      const r = await api(srcSock, "PUT", "/migration/send", { destination_url: url }, 120_000);
      assertEquals(r.status, 200, r.body + src.tail());
      assertEquals(await src.status(60_000), 0, src.tail());
      assertIncludes(src.stderr, `migration: the VM moved to ${url} (`);

      assertEquals(await dst.status(5 * 60_000), 0, dst.tail());
      assertIncludes(dst.stdout, `WORK-DONE ${SUM}`);
      assertTrue(!src.stdout.includes("WORK-DONE"), `the source finished the work${src.tail()}`);
      assertTrue(
        !dst.stdout.includes("Linux version") && !dst.stdout.includes("WORK-START"),
        `the destination ran the guest from its start${dst.tail()}`,
      );
      assertIncludes(dst.stderr, "migration: the VM arrived; it runs on the interp backend");
    } finally {
      src?.kill();
      dst?.kill();
      await src?.done;
      await dst?.done;
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
