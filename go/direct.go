package meshring

/*
#include "shim_msg.h"
*/
import "C"

// directBatch is how many buffers one direct call takes (see
// mrgo_tun_read_direct in shim_msg.h): passed as arguments, cgo pins them
// for the call itself, which costs far less than a runtime.Pinner.
const directBatch = C.MRGO_DIRECT

// directPtrs holds the buffers of one direct call; unused entries are nil.
type directPtrs [directBatch]*C.uint8_t

func tunReadDirect(h *C.mr_tun, c *C.mrgo_tun_call, n int, timeoutMS int32, p *directPtrs) Status {
	return Status(C.mrgo_tun_read_direct(h, c, C.size_t(n), C.int32_t(timeoutMS), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29], p[30], p[31], p[32], p[33], p[34], p[35], p[36], p[37], p[38], p[39], p[40], p[41], p[42], p[43], p[44], p[45], p[46], p[47], p[48], p[49], p[50], p[51], p[52], p[53], p[54], p[55], p[56], p[57], p[58], p[59], p[60], p[61], p[62], p[63]))
}

func tunWriteDirect(h *C.mr_tun, c *C.mrgo_tun_call, n int, p *directPtrs) Status {
	return Status(C.mrgo_tun_write_direct(h, c, C.size_t(n), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29], p[30], p[31], p[32], p[33], p[34], p[35], p[36], p[37], p[38], p[39], p[40], p[41], p[42], p[43], p[44], p[45], p[46], p[47], p[48], p[49], p[50], p[51], p[52], p[53], p[54], p[55], p[56], p[57], p[58], p[59], p[60], p[61], p[62], p[63]))
}

func udpRecvDirect(h *C.mr_udp, c *C.mrgo_msg_call, n int, timeoutMS int32, p *directPtrs) Status {
	return Status(C.mrgo_udp_recvmsg_direct(h, c, C.size_t(n), C.int32_t(timeoutMS), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29], p[30], p[31], p[32], p[33], p[34], p[35], p[36], p[37], p[38], p[39], p[40], p[41], p[42], p[43], p[44], p[45], p[46], p[47], p[48], p[49], p[50], p[51], p[52], p[53], p[54], p[55], p[56], p[57], p[58], p[59], p[60], p[61], p[62], p[63]))
}

func udpSendDirect(h *C.mr_udp, c *C.mrgo_msg_call, off, n, niov int, timeoutMS int32, p *directPtrs) Status {
	return Status(C.mrgo_udp_sendmsg_direct(h, c, C.size_t(off), C.size_t(n), C.size_t(niov), C.int32_t(timeoutMS), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], p[26], p[27], p[28], p[29], p[30], p[31], p[32], p[33], p[34], p[35], p[36], p[37], p[38], p[39], p[40], p[41], p[42], p[43], p[44], p[45], p[46], p[47], p[48], p[49], p[50], p[51], p[52], p[53], p[54], p[55], p[56], p[57], p[58], p[59], p[60], p[61], p[62], p[63]))
}
