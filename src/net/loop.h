/*
 * A small single-threaded epoll loop (the shape of redis ae / lxc mainloop):
 * fd callbacks, one-shot timers and a thread-safe post queue.
 *
 * Threading: everything except cta_loop_post() and cta_loop_stop() must be
 * called on the loop thread (the thread inside cta_loop_run()), or by the one
 * thread that owns the loop while it is not running (setup and teardown).
 *
 * fd callbacks are level-triggered; `events` are EPOLLIN/EPOLLOUT bits, and
 * EPOLLERR/EPOLLHUP are always reported. A callback may add, modify or delete
 * any fd, itself included; an fd deleted during a dispatch round gets no more
 * events from that round.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct cta_error;
struct cta_loop;

int cta_loop_new(struct cta_loop **ret, struct cta_error **err);
/* Runs the functions still queued by cta_loop_post() (so that they can drop
 * what they hold), then frees the loop. Registered fds are not closed: their
 * owners close them. Returns NULL. */
struct cta_loop *cta_loop_free(struct cta_loop *l);

typedef void (*cta_io_cb)(struct cta_loop *l, int fd, uint32_t events, void *data);
/* Watch fd for events (EPOLLIN | EPOLLOUT, or 0 for errors only). The loop
 * does not own fd; call cta_loop_del_fd() before closing it.
 * Returns 0, or -CTA_E_INVALID (fd < 0 or already watched), -CTA_E_IO (errno set). */
int cta_loop_add_fd(struct cta_loop *l, int fd, uint32_t events, cta_io_cb cb, void *data);
int cta_loop_mod_fd(struct cta_loop *l, int fd, uint32_t events);
void cta_loop_del_fd(struct cta_loop *l, int fd); /* no-op if fd is not watched */

typedef void (*cta_timer_cb)(struct cta_loop *l, void *data);
/* One-shot timer; returns an id > 0. Timers with the same deadline fire in the
 * order they were added. */
uint64_t cta_loop_timer_add(struct cta_loop *l, uint64_t after_ms, cta_timer_cb cb, void *data);
/* Cancel a pending timer; a no-op for 0, fired or already cancelled ids. */
void cta_loop_timer_cancel(struct cta_loop *l, uint64_t id);

/* Thread-safe: run fn(data) on the loop thread soon, in posting order. Never
 * runs fn inside the call, even on the loop thread. */
void cta_loop_post(struct cta_loop *l, void (*fn)(void *data), void *data);

/* Run until cta_loop_stop(). Returns 0, or -CTA_E_IO if epoll fails. A stop
 * requested before the call makes it return at once. */
int cta_loop_run(struct cta_loop *l);
/* Thread- and async-signal-safe. */
void cta_loop_stop(struct cta_loop *l);

/* True on the thread running cta_loop_run(), or on any thread while the loop
 * is not running (then the caller is its owner by the rule above). */
bool cta_loop_in_loop_thread(struct cta_loop *l);
