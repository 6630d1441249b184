/* Cheap HTTP/1.x recognisers used on the first bytes of a syscall's data. */
#ifndef TELEGEN_HTTP_SNIFF_H
#define TELEGEN_HTTP_SNIFF_H

/* A request line starts with a method token and a space: "GET ", "POST ", ... */
static __always_inline int tg_is_http_request(const __u8 *b)
{
    switch (b[0]) {
    case 'G': return b[1] == 'E' && b[2] == 'T' && b[3] == ' ';
    case 'P':
        return (b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ') ||
               (b[1] == 'U' && b[2] == 'T' && b[3] == ' ') ||
               (b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ');
    case 'H': return b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ';
    case 'D': return b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ';
    case 'O': return b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S';
    case 'C': return b[1] == 'O' && b[2] == 'N' && b[3] == 'N' && b[4] == 'E' && b[5] == 'C' && b[6] == 'T';
    case 'T': return b[1] == 'R' && b[2] == 'A' && b[3] == 'C' && b[4] == 'E' && b[5] == ' ';
    }
    return 0;
}

/* "HTTP/1.x " status line. */
static __always_inline int tg_is_http_response(const __u8 *b)
{
    return b[0] == 'H' && b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' &&
           b[6] == '.' && b[8] == ' ';
}

#endif
