/**
 * The example handler the image ships in /app/handlers, so that the image and the manifests in
 * deploy/kubernetes run as they are. Replace it with yours (architecture/deployment.md): a module
 * whose export takes `(message, ctx)`; returning acks the row, throwing retries it.
 *
 * It writes one JSON line per message to stdout, which is the container's log.
 */
export default function handleOrder(message) {
  console.log(
    JSON.stringify({
      level: 'info',
      msg: 'order handled',
      queue: message.queue,
      id: message.id,
      deliveries: message.deliveriesCount,
    }),
  );
}
