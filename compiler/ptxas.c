/* ptxas.c: the driver's use of the CUDA toolkit's PTX assembler.
 *
 * Two uses: `-v` prints ptxas's resource report of a megakernel (registers, each function's stack
 * and spills), and `--cubin` assembles the sm_90a PTX ahead of time into a cubin that the
 * generated C embeds, so that a model's first start loads machine code instead of waiting for the
 * driver to compile the PTX. ptxas is $MLKC_PTXAS when set, else $CUDA_HOME/bin/ptxas, else the
 * toolkit's found when mlkc was built, else `ptxas` on PATH; nvlink is the one beside it.
 *
 * Both compile as the driver does (cuLinkAddData of PTX, then cuLinkComplete): `ptxas -c`, a
 * relocatable object, then `nvlink`. That gives the driver's machine code byte for byte (the
 * Llama decode kernel's 55 functions, H200 driver 580 against ptxas and nvlink 13.0), while a
 * whole-program `ptxas` allocates registers across the megakernel's calls differently: its cubin
 * ran batch 16 43% and batch 1 7% slower (docs/performance.md, twenty-second session), and its
 * spill report was not the code that runs. It is also ~8x faster to build (4 s against 31 s).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ptxas.h"

/* The ptxas to run, into buf: $MLKC_PTXAS as it is when set, else the first of the other places
 * that holds an executable file, else the bare name (the shell then searches PATH). */
static void find_ptxas(char *buf, size_t n) {
  const char *env = getenv("MLKC_PTXAS");
  if (env && *env) {
    snprintf(buf, n, "%s", env);
    return;
  }
  const char *home = getenv("CUDA_HOME");
  if (home && *home) {
    snprintf(buf, n, "%s/bin/ptxas", home);
    if (access(buf, X_OK) == 0)
      return;
  }
  snprintf(buf, n, "%s", MLKC_PTXAS);
  if (*buf && access(buf, X_OK) == 0)
    return;
  snprintf(buf, n, "ptxas");
}

/* A private temporary directory for ptxas's input and output; false with a message on failure. */
static bool make_tmpdir(char *dir, size_t n, const char *why) {
  const char *t = getenv("TMPDIR");
  snprintf(dir, n, "%s/mlkc-ptxas-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(dir)) {
    fprintf(stderr, "mlkc: error: %s: cannot create a temporary directory under %s: %s\n", why,
            t && *t ? t : "/tmp", strerror(errno));
    return false;
  }
  return true;
}

static bool write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  bool ok = fputs(text, f) >= 0;
  return (fclose(f) == 0) & ok;
}

/* -v: assembles the PTX with `ptxas -v` and prints its resource report lines on stderr, each
 * function's stack and spill line under the function's name (the tiles are called functions:
 * their spills are what a tile change moves). */
void ptxas_report(const char *ptx, const char *arch) {
  char ptxas[4096], dir[4096], in[4200];
  find_ptxas(ptxas, sizeof ptxas);
  if (!make_tmpdir(dir, sizeof dir, "-v"))
    return;
  snprintf(in, sizeof in, "%s/in.ptx", dir);
  if (!write_text(in, ptx)) {
    fprintf(stderr, "mlkc: note: -v: cannot write %s\n", in);
    unlink(in);
    rmdir(dir);
    return;
  }
  char cmd[12600];
  snprintf(cmd, sizeof cmd, "'%s' -c -v -arch=%s '%s' -o /dev/null 2>&1", ptxas, arch, in);
  FILE *p = popen(cmd, "r");
  int shown = 0;
  if (p) {
    char line[1024], fn[256] = "";
    while (fgets(line, sizeof line, p)) {
      const char *props = strstr(line, "Function properties for ");
      if (props) { /* names the function of the next stack/spill line */
        snprintf(fn, sizeof fn, "%s", props + strlen("Function properties for "));
        fn[strcspn(fn, "\r\n")] = 0;
        continue;
      }
      if (strstr(line, "spill") && *fn) {
        const char *s = line + strspn(line, " \t");
        fprintf(stderr, "mlkc: ptxas %s: %s: %s", arch, fn, s);
        fn[0] = 0;
        shown++;
      } else if (strstr(line, "Compiling entry") || strstr(line, "registers") ||
                 strstr(line, "spill") || strstr(line, "error")) {
        fprintf(stderr, "mlkc: ptxas %s: %s", arch, line);
        shown++;
      }
    }
    int rc = pclose(p);
    if (rc != 0 && !shown)
      fprintf(stderr, "mlkc: note: -v: '%s' not found or failed (set CUDA_HOME)\n", ptxas);
  }
  unlink(in);
  rmdir(dir);
}

/* Prints at most the first 40 lines of a tool's messages, each prefixed. */
static void relay_log(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    if (++n > 40) {
      fputs("mlkc: | ...\n", stderr);
      break;
    }
    fprintf(stderr, "mlkc: | %s%s", line, strchr(line, '\n') ? "" : "\n");
  }
  fclose(f);
}

/* Runs one step of --cubin (`tool` with `args`, its output to `log`); false with the reason and
 * the tool's messages on stderr. */
static bool run_step(const char *tool, const char *what, const char *args, const char *log) {
  char cmd[17000];
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", tool, args, log);
  int rc = system(cmd);
  if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
    return true;
  int code = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  if (code == 127)
    fprintf(stderr, "mlkc: error: --cubin needs the CUDA toolkit's %s: '%s' was not found "
            "(set MLKC_PTXAS or CUDA_HOME, or put ptxas and nvlink on PATH)\n", what, tool);
  else
    fprintf(stderr, "mlkc: error: --cubin: %s failed (exit %d; %s):\n", what, code, tool);
  relay_log(log);
  return false;
}

bool ptxas_cubin(const char *ptx, const char *arch, unsigned char **cubin, size_t *bytes) {
  *cubin = NULL;
  *bytes = 0;
  char ptxas[4096], nvlink[4200], dir[4096], in[4200], obj[4200], out[4200], log[4200];
  find_ptxas(ptxas, sizeof ptxas);
  const char *slash = strrchr(ptxas, '/');
  snprintf(nvlink, sizeof nvlink, "%.*snvlink", slash ? (int)(slash - ptxas + 1) : 0, ptxas);
  if (!make_tmpdir(dir, sizeof dir, "--cubin"))
    return false;
  snprintf(in, sizeof in, "%s/in.ptx", dir);
  snprintf(obj, sizeof obj, "%s/in.o", dir);
  snprintf(out, sizeof out, "%s/out.cubin", dir);
  snprintf(log, sizeof log, "%s/tool.log", dir);
  bool ok = false;
  if (!write_text(in, ptx)) {
    fprintf(stderr, "mlkc: error: --cubin: cannot write %s: %s\n", in, strerror(errno));
    goto done;
  }
  char args[13000];
  snprintf(args, sizeof args, "-c -arch=%s '%s' -o '%s'", arch, in, obj);
  if (!run_step(ptxas, "ptxas", args, log))
    goto done;
  snprintf(args, sizeof args, "-arch=%s '%s' -o '%s'", arch, obj, out);
  if (!run_step(nvlink, "nvlink", args, log))
    goto done;
  FILE *f = fopen(out, "rb");
  struct stat sb;
  if (!f || fstat(fileno(f), &sb) != 0 || sb.st_size <= 0) {
    fprintf(stderr, "mlkc: error: --cubin: nvlink wrote no cubin at %s\n", out);
    if (f)
      fclose(f);
    goto done;
  }
  *cubin = malloc((size_t)sb.st_size);
  if (!*cubin || fread(*cubin, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
    fprintf(stderr, "mlkc: error: --cubin: cannot read %s (%lld bytes)\n", out,
            (long long)sb.st_size);
    free(*cubin);
    *cubin = NULL;
    fclose(f);
    goto done;
  }
  fclose(f);
  *bytes = (size_t)sb.st_size;
  ok = true;
done:
  unlink(in);
  unlink(obj);
  unlink(out);
  unlink(log);
  rmdir(dir);
  return ok;
}
