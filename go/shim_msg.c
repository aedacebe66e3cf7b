#include <stdio.h>

#include "shim_msg.h"

static mr_status msg_capture(mr_status st, mrgo_err *err) {
	if (st != MR_OK && err != NULL) {
		err->os_err = (st == MR_IO) ? mr_last_os_error() : 0;
		mr_last_error(err->msg, sizeof err->msg);
	}
	return st;
}

mr_status mrgo_udp_set_mark(mr_udp *u, uint32_t mark, mrgo_err *err) {
	return msg_capture(mr_udp_set_mark(u, mark), err);
}

mr_status mrgo_udp_sockopt(const mr_udp *u, int level, int name, int *value, mrgo_err *err) {
	return msg_capture(mr_udp_sockopt(u, level, name, value), err);
}

mr_status mrgo_tun_gro(const mr_tun *t, uint32_t *bits, mrgo_err *err) {
	return msg_capture(mr_tun_gro(t, bits), err);
}

mr_status mrgo_tun_disable_gro(mr_tun *t, uint32_t bits, mrgo_err *err) {
	return msg_capture(mr_tun_disable_gro(t, bits), err);
}

static void direct_point(mrgo_tun_call *c, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63) {
	c->pkts[0].buf = b0;
	c->pkts[1].buf = b1;
	c->pkts[2].buf = b2;
	c->pkts[3].buf = b3;
	c->pkts[4].buf = b4;
	c->pkts[5].buf = b5;
	c->pkts[6].buf = b6;
	c->pkts[7].buf = b7;
	c->pkts[8].buf = b8;
	c->pkts[9].buf = b9;
	c->pkts[10].buf = b10;
	c->pkts[11].buf = b11;
	c->pkts[12].buf = b12;
	c->pkts[13].buf = b13;
	c->pkts[14].buf = b14;
	c->pkts[15].buf = b15;
	c->pkts[16].buf = b16;
	c->pkts[17].buf = b17;
	c->pkts[18].buf = b18;
	c->pkts[19].buf = b19;
	c->pkts[20].buf = b20;
	c->pkts[21].buf = b21;
	c->pkts[22].buf = b22;
	c->pkts[23].buf = b23;
	c->pkts[24].buf = b24;
	c->pkts[25].buf = b25;
	c->pkts[26].buf = b26;
	c->pkts[27].buf = b27;
	c->pkts[28].buf = b28;
	c->pkts[29].buf = b29;
	c->pkts[30].buf = b30;
	c->pkts[31].buf = b31;
	c->pkts[32].buf = b32;
	c->pkts[33].buf = b33;
	c->pkts[34].buf = b34;
	c->pkts[35].buf = b35;
	c->pkts[36].buf = b36;
	c->pkts[37].buf = b37;
	c->pkts[38].buf = b38;
	c->pkts[39].buf = b39;
	c->pkts[40].buf = b40;
	c->pkts[41].buf = b41;
	c->pkts[42].buf = b42;
	c->pkts[43].buf = b43;
	c->pkts[44].buf = b44;
	c->pkts[45].buf = b45;
	c->pkts[46].buf = b46;
	c->pkts[47].buf = b47;
	c->pkts[48].buf = b48;
	c->pkts[49].buf = b49;
	c->pkts[50].buf = b50;
	c->pkts[51].buf = b51;
	c->pkts[52].buf = b52;
	c->pkts[53].buf = b53;
	c->pkts[54].buf = b54;
	c->pkts[55].buf = b55;
	c->pkts[56].buf = b56;
	c->pkts[57].buf = b57;
	c->pkts[58].buf = b58;
	c->pkts[59].buf = b59;
	c->pkts[60].buf = b60;
	c->pkts[61].buf = b61;
	c->pkts[62].buf = b62;
	c->pkts[63].buf = b63;
}

static void direct_clear(mrgo_tun_call *c) {
	size_t i;
	for (i = 0; i < MRGO_DIRECT; i++) {
		c->pkts[i].buf = NULL;
	}
}

mr_status mrgo_tun_read_direct(mr_tun *t, mrgo_tun_call *c, size_t n, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63) {
	mr_status st;
	if (n > MRGO_DIRECT) {
		n = MRGO_DIRECT;
	}
	direct_point(c, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23, b24, b25, b26, b27, b28, b29, b30, b31, b32, b33, b34, b35, b36, b37, b38, b39, b40, b41, b42, b43, b44, b45, b46, b47, b48, b49, b50, b51, b52, b53, b54, b55, b56, b57, b58, b59, b60, b61, b62, b63);
	c->count = 0;
	st = mr_tun_read(t, c->pkts, n, timeout_ms, &c->count);
	direct_clear(c);
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return msg_capture(st, &c->err);
}

mr_status mrgo_tun_write_direct(mr_tun *t, mrgo_tun_call *c, size_t n, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63) {
	mr_status st;
	if (n > MRGO_DIRECT) {
		n = MRGO_DIRECT;
	}
	direct_point(c, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23, b24, b25, b26, b27, b28, b29, b30, b31, b32, b33, b34, b35, b36, b37, b38, b39, b40, b41, b42, b43, b44, b45, b46, b47, b48, b49, b50, b51, b52, b53, b54, b55, b56, b57, b58, b59, b60, b61, b62, b63);
	c->count = 0;
	st = mr_tun_write_batch(t, c->pkts, n, &c->count);
	direct_clear(c);
	return msg_capture(st, &c->err);
}

mr_status mrgo_udp_recvmsg_direct(mr_udp *u, mrgo_msg_call *c, size_t n, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63) {
	mr_status st;
	size_t i;
	if (n > MRGO_DIRECT) {
		n = MRGO_DIRECT;
	}
	c->msgs[0].buf = b0;
	c->msgs[1].buf = b1;
	c->msgs[2].buf = b2;
	c->msgs[3].buf = b3;
	c->msgs[4].buf = b4;
	c->msgs[5].buf = b5;
	c->msgs[6].buf = b6;
	c->msgs[7].buf = b7;
	c->msgs[8].buf = b8;
	c->msgs[9].buf = b9;
	c->msgs[10].buf = b10;
	c->msgs[11].buf = b11;
	c->msgs[12].buf = b12;
	c->msgs[13].buf = b13;
	c->msgs[14].buf = b14;
	c->msgs[15].buf = b15;
	c->msgs[16].buf = b16;
	c->msgs[17].buf = b17;
	c->msgs[18].buf = b18;
	c->msgs[19].buf = b19;
	c->msgs[20].buf = b20;
	c->msgs[21].buf = b21;
	c->msgs[22].buf = b22;
	c->msgs[23].buf = b23;
	c->msgs[24].buf = b24;
	c->msgs[25].buf = b25;
	c->msgs[26].buf = b26;
	c->msgs[27].buf = b27;
	c->msgs[28].buf = b28;
	c->msgs[29].buf = b29;
	c->msgs[30].buf = b30;
	c->msgs[31].buf = b31;
	c->msgs[32].buf = b32;
	c->msgs[33].buf = b33;
	c->msgs[34].buf = b34;
	c->msgs[35].buf = b35;
	c->msgs[36].buf = b36;
	c->msgs[37].buf = b37;
	c->msgs[38].buf = b38;
	c->msgs[39].buf = b39;
	c->msgs[40].buf = b40;
	c->msgs[41].buf = b41;
	c->msgs[42].buf = b42;
	c->msgs[43].buf = b43;
	c->msgs[44].buf = b44;
	c->msgs[45].buf = b45;
	c->msgs[46].buf = b46;
	c->msgs[47].buf = b47;
	c->msgs[48].buf = b48;
	c->msgs[49].buf = b49;
	c->msgs[50].buf = b50;
	c->msgs[51].buf = b51;
	c->msgs[52].buf = b52;
	c->msgs[53].buf = b53;
	c->msgs[54].buf = b54;
	c->msgs[55].buf = b55;
	c->msgs[56].buf = b56;
	c->msgs[57].buf = b57;
	c->msgs[58].buf = b58;
	c->msgs[59].buf = b59;
	c->msgs[60].buf = b60;
	c->msgs[61].buf = b61;
	c->msgs[62].buf = b62;
	c->msgs[63].buf = b63;
	c->count = 0;
	st = mr_udp_recvmsg(u, c->msgs, n, timeout_ms, &c->count);
	for (i = 0; i < MRGO_DIRECT; i++) {
		c->msgs[i].buf = NULL;
	}
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return msg_capture(st, &c->err);
}

mr_status mrgo_udp_sendmsg_direct(mr_udp *u, mrgo_msg_call *c, size_t off, size_t n, size_t niov, int32_t timeout_ms, uint8_t *b0, uint8_t *b1, uint8_t *b2, uint8_t *b3, uint8_t *b4, uint8_t *b5, uint8_t *b6, uint8_t *b7, uint8_t *b8, uint8_t *b9, uint8_t *b10, uint8_t *b11, uint8_t *b12, uint8_t *b13, uint8_t *b14, uint8_t *b15, uint8_t *b16, uint8_t *b17, uint8_t *b18, uint8_t *b19, uint8_t *b20, uint8_t *b21, uint8_t *b22, uint8_t *b23, uint8_t *b24, uint8_t *b25, uint8_t *b26, uint8_t *b27, uint8_t *b28, uint8_t *b29, uint8_t *b30, uint8_t *b31, uint8_t *b32, uint8_t *b33, uint8_t *b34, uint8_t *b35, uint8_t *b36, uint8_t *b37, uint8_t *b38, uint8_t *b39, uint8_t *b40, uint8_t *b41, uint8_t *b42, uint8_t *b43, uint8_t *b44, uint8_t *b45, uint8_t *b46, uint8_t *b47, uint8_t *b48, uint8_t *b49, uint8_t *b50, uint8_t *b51, uint8_t *b52, uint8_t *b53, uint8_t *b54, uint8_t *b55, uint8_t *b56, uint8_t *b57, uint8_t *b58, uint8_t *b59, uint8_t *b60, uint8_t *b61, uint8_t *b62, uint8_t *b63) {
	mr_status st;
	size_t i;
	c->count = 0;
	if (off > MRGO_BATCH || n > MRGO_BATCH - off || niov > MRGO_DIRECT) {
		c->err.os_err = 0;
		snprintf(c->err.msg, sizeof c->err.msg, "mrgo_udp_sendmsg_direct: %zu..%zu of %zu buffers exceed the call", off, off + n, niov);
		return MR_INVALID_ARGUMENT;
	}
	c->iov[0].base = b0;
	c->iov[1].base = b1;
	c->iov[2].base = b2;
	c->iov[3].base = b3;
	c->iov[4].base = b4;
	c->iov[5].base = b5;
	c->iov[6].base = b6;
	c->iov[7].base = b7;
	c->iov[8].base = b8;
	c->iov[9].base = b9;
	c->iov[10].base = b10;
	c->iov[11].base = b11;
	c->iov[12].base = b12;
	c->iov[13].base = b13;
	c->iov[14].base = b14;
	c->iov[15].base = b15;
	c->iov[16].base = b16;
	c->iov[17].base = b17;
	c->iov[18].base = b18;
	c->iov[19].base = b19;
	c->iov[20].base = b20;
	c->iov[21].base = b21;
	c->iov[22].base = b22;
	c->iov[23].base = b23;
	c->iov[24].base = b24;
	c->iov[25].base = b25;
	c->iov[26].base = b26;
	c->iov[27].base = b27;
	c->iov[28].base = b28;
	c->iov[29].base = b29;
	c->iov[30].base = b30;
	c->iov[31].base = b31;
	c->iov[32].base = b32;
	c->iov[33].base = b33;
	c->iov[34].base = b34;
	c->iov[35].base = b35;
	c->iov[36].base = b36;
	c->iov[37].base = b37;
	c->iov[38].base = b38;
	c->iov[39].base = b39;
	c->iov[40].base = b40;
	c->iov[41].base = b41;
	c->iov[42].base = b42;
	c->iov[43].base = b43;
	c->iov[44].base = b44;
	c->iov[45].base = b45;
	c->iov[46].base = b46;
	c->iov[47].base = b47;
	c->iov[48].base = b48;
	c->iov[49].base = b49;
	c->iov[50].base = b50;
	c->iov[51].base = b51;
	c->iov[52].base = b52;
	c->iov[53].base = b53;
	c->iov[54].base = b54;
	c->iov[55].base = b55;
	c->iov[56].base = b56;
	c->iov[57].base = b57;
	c->iov[58].base = b58;
	c->iov[59].base = b59;
	c->iov[60].base = b60;
	c->iov[61].base = b61;
	c->iov[62].base = b62;
	c->iov[63].base = b63;
	st = mr_udp_sendmsg(u, c->msgs + off, n, timeout_ms, &c->count);
	for (i = 0; i < MRGO_DIRECT; i++) {
		c->iov[i].base = NULL;
	}
	if (st == MR_TIMEOUT || st == MR_WOULD_BLOCK) {
		return st;
	}
	return msg_capture(st, &c->err);
}
