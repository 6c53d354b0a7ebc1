"""Reads .eml files with Python's email package (policy.default) and prints,
as one JSON array, what an independent MIME reader sees in each: decoded
headers, addresses, bodies, attachment digests, structure and every defect
it reported. Used by mime_python_parse_test.cpp."""

import hashlib
import json
import sys
from email import message_from_binary_file, policy


def addresses(msg, name):
    header = msg[name]
    if header is None:
        return None
    return [{"name": a.display_name, "addr": a.addr_spec} for a in header.addresses]


def shape(part):
    ctype = part.get_content_type()
    if not part.is_multipart():
        return ctype
    return ctype + "(" + ",".join(shape(p) for p in part.iter_parts()) + ")"


def describe(path):
    with open(path, "rb") as f:
        msg = message_from_binary_file(f, policy=policy.default)

    defects = [type(d).__name__ for d in msg.defects]
    text = html = None
    attachments = []
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
        for name, value in part.items():
            defects += [name + ": " + type(d).__name__ + ": " + str(d)
                        for d in getattr(value, "defects", ())]
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename()
        if filename is None and ctype == "text/plain" and text is None:
            text = part.get_content().replace("\r\n", "\n")
        elif filename is None and ctype == "text/html" and html is None:
            html = part.get_content().replace("\r\n", "\n")
        else:
            data = part.get_payload(decode=True)
            attachments.append({
                "filename": filename,
                "content_type": ctype,
                "content_id": part.get("Content-ID"),
                "disposition": part.get_content_disposition(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            })

    def header(name):
        value = msg[name]
        return None if value is None else str(value)

    return {
        "subject": header("Subject"),
        "from": addresses(msg, "From"),
        "to": addresses(msg, "To"),
        "cc": addresses(msg, "Cc"),
        "reply_to": addresses(msg, "Reply-To"),
        "bcc_present": msg["Bcc"] is not None,
        "date": int(msg["Date"].datetime.timestamp()) if msg["Date"] is not None else None,
        "message_id": header("Message-ID"),
        "in_reply_to": header("In-Reply-To"),
        "references": header("References"),
        "list_unsubscribe": header("List-Unsubscribe"),
        "list_unsubscribe_post": header("List-Unsubscribe-Post"),
        "headers": [[k, str(v)] for k, v in msg.items()],
        "structure": shape(msg),
        "text": text,
        "html": html,
        "attachments": attachments,
        "defects": defects,
    }


if __name__ == "__main__":
    json.dump([describe(p) for p in sys.argv[1:]], sys.stdout, ensure_ascii=True)
