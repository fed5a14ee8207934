# whk - plain make.  `make check` and `make demo` install what they need.

PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
DATADIR	?= $(PREFIX)/share

CC	?= cc
CFLAGS	?= -O2 -g
PKGS	 = libcurl sqlite3 libcrypto
WARN	 = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wpointer-arith
STD	 = -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE

# SAN=1: AddressSanitizer and UndefinedBehaviorSanitizer, built apart.
ifeq ($(SAN),1)
MODE	 = san
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
	   -fno-omit-frame-pointer -O1
else
MODE	 = rel
SANFLAGS =
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
		echo -lcurl -lsqlite3 -lcrypto)
ALL_CFLAGS  = $(STD) $(WARN) $(CFLAGS) $(SANFLAGS) $(PKG_CFLAGS) -Ilib
LIBS	    = $(PKG_LIBS) -ljq -lm -pthread

PROGS	 = whk-ingest whk-endpoint whk-batch whk-deliver whk-retry whk-log
LIBSRC	 = lib/util.c lib/lines.c lib/json.c lib/store.c lib/http.c lib/sign.c \
	   lib/backoff.c
OBJDIR	 = build/$(MODE)
LIBOBJ	 = $(LIBSRC:lib/%.c=$(OBJDIR)/lib/%.o)
LIBA	 = $(OBJDIR)/libwhk.a
BINS	 = $(PROGS:%=bin/%)
FUZZERS	 = ingest duration
TESTBINS = bin/test-receiver bin/bench-curl-multi $(FUZZERS:%=bin/fuzz-%)
MAN1	 = $(PROGS:%=share/man/man1/%.1)

all: $(BINS) $(TESTBINS)

# Switching between SAN=1 and a normal build relinks everything.
$(OBJDIR)/.mode:
	@rm -f build/*/.mode; mkdir -p $(OBJDIR); touch $@

$(OBJDIR)/%.o: %.c lib/whk.h $(OBJDIR)/.mode
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# An archive, and --as-needed: a program links only the parts of the
# library it calls, and loads only their libraries (whk-log starts in a
# third of the time without libcurl's).
$(LIBA): $(LIBOBJ)
	rm -f $@
	$(AR) rcs $@ $(LIBOBJ)

$(BINS): bin/%: $(OBJDIR)/cmd/%.o $(LIBA) $(OBJDIR)/.mode
	@mkdir -p bin
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $< $(LIBA) -Wl,--as-needed $(LIBS)

# Test helpers: built with the programs, never installed.
bin/test-receiver: tests/receiver.c $(OBJDIR)/.mode
	@mkdir -p bin
	$(CC) $(STD) $(WARN) $(CFLAGS) $(SANFLAGS) -pthread -o $@ \
	    tests/receiver.c $(PKG_CFLAGS) -lcrypto

bin/bench-curl-multi: tests/bench/curl-multi.c $(OBJDIR)/.mode
	@mkdir -p bin
	$(CC) $(STD) $(WARN) $(CFLAGS) $(SANFLAGS) -o $@ \
	    tests/bench/curl-multi.c $(PKG_CFLAGS) -lcurl

# Fuzz targets (tests/fuzz/): replayed on their corpus by make check, and
# run under libFuzzer by make fuzz, FUZZ_TIME seconds each (needs clang).
$(FUZZERS:%=bin/fuzz-%): bin/fuzz-%: tests/fuzz/%.c tests/fuzz/replay.c \
    $(LIBA) $(OBJDIR)/.mode
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -o $@ tests/fuzz/$*.c tests/fuzz/replay.c \
	    $(LIBA) -Wl,--as-needed $(LIBS)

FUZZ_CC	  ?= clang
FUZZ_TIME ?= 60
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined \
	     -fno-sanitize-recover=all -fno-omit-frame-pointer

build/fuzz/fuzz-%: tests/fuzz/%.c $(LIBSRC) lib/whk.h
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	    echo "fuzz: no $(FUZZ_CC): install clang and libFuzzer" \
		"(Debian: sh tests/deps.sh fuzz, as root), or name" \
		"another clang with FUZZ_CC=" >&2; exit 1; }
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(STD) $(filter-out -Werror,$(WARN)) $(FUZZ_FLAGS) \
	    $(PKG_CFLAGS) -Ilib -o $@ $< $(LIBSRC) $(LIBS)

fuzz: $(FUZZERS:%=build/fuzz/fuzz-%)
	@sh tests/fuzz/run.sh $(FUZZ_TIME) $(FUZZERS)

deps:
	@sh tests/deps.sh

check: deps
	@$(MAKE) --no-print-directory all SAN=$(SAN)
	@SAN=$(SAN) sh tests/run.sh $(TESTS)

# The same suites, the long forms where they have one (crash, concurrency).
# The same suites in their long forms: 20,000 events killed in 20 rounds,
# a minute of every program at once.
check-full:
	@WHK_FULL=1 $(MAKE) --no-print-directory check

bench: deps all
	@sh tests/bench/run.sh

demo: deps all
	@sh share/examples/demo.sh

install: all
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man7 \
	    $(DESTDIR)$(DATADIR)/bash-completion/completions \
	    $(DESTDIR)$(DATADIR)/zsh/site-functions \
	    $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 share/man/man7/whk.7 $(DESTDIR)$(MANDIR)/man7/
	for p in $(PROGS); do \
	    install -m 644 completions/bash/$$p \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/$$p; \
	    install -m 644 completions/zsh/_$$p \
		$(DESTDIR)$(DATADIR)/zsh/site-functions/_$$p; \
	    install -m 644 completions/fish/$$p.fish \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$p.fish; \
	done

uninstall:
	for p in $(PROGS); do \
	    rm -f $(DESTDIR)$(BINDIR)/$$p $(DESTDIR)$(MANDIR)/man1/$$p.1 \
		$(DESTDIR)$(DATADIR)/bash-completion/completions/$$p \
		$(DESTDIR)$(DATADIR)/zsh/site-functions/_$$p \
		$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$p.fish; \
	done
	rm -f $(DESTDIR)$(MANDIR)/man7/whk.7

clean:
	rm -rf bin build

.PHONY: all deps check check-full bench demo install uninstall clean fuzz
