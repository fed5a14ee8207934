/*
 * replay - run a fuzz target on saved inputs, without libFuzzer: each
 * file named, and each file in each directory named (not below it), in
 * name order.  A target that finds a property violated aborts, so any
 * failure ends the run with the target's status.  Prints how many inputs
 * ran; an input that cannot be read is an error, and so is none at all.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *prog = "replay";

static int
run_file(const char *path)
{
	struct stat st;
	FILE *f;
	uint8_t *buf;
	size_t n;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) == -1) {
		fprintf(stderr, "%s: cannot read '%s': %s\n", prog, path,
		    strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	/* Exactly its size: a read past the input is the sanitizer's. */
	if ((buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(4);
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f) || n != (size_t)st.st_size) {
		fprintf(stderr, "%s: cannot read '%s'\n", prog, path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct dirent **names;
	struct stat st;
	char path[4096];
	long count = 0;
	int i, k, n, bad = 0;

	if (argc > 0 && strrchr(argv[0], '/'))
		prog = strrchr(argv[0], '/') + 1;
	else if (argc > 0)
		prog = argv[0];
	if (argc < 2) {
		fprintf(stderr, "usage: %s file|directory ...\n", prog);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == -1) {
			fprintf(stderr, "%s: cannot read '%s': %s\n", prog,
			    argv[i], strerror(errno));
			bad = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) == -1)
				bad = 1;
			else
				count++;
			continue;
		}
		if ((n = scandir(argv[i], &names, NULL, alphasort)) == -1) {
			fprintf(stderr, "%s: cannot read '%s': %s\n", prog,
			    argv[i], strerror(errno));
			bad = 1;
			continue;
		}
		for (k = 0; k < n; k++) {
			snprintf(path, sizeof(path), "%s/%s", argv[i],
			    names[k]->d_name);
			if (names[k]->d_name[0] != '.' && stat(path, &st) == 0 &&
			    S_ISREG(st.st_mode)) {
				if (run_file(path) == -1)
					bad = 1;
				else
					count++;
			}
			free(names[k]);
		}
		free(names);
	}
	printf("%s: %ld inputs replayed\n", prog, count);
	fflush(stdout);
	if (count == 0) {
		fprintf(stderr, "%s: no inputs\n", prog);
		return 1;
	}
	return bad;
}
