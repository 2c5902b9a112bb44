// Starts local-aws-sqs (a library with no CLI) on 127.0.0.1:$PORT for Palleto's tests.
import { createSqsServer } from "local-aws-sqs";
const port = Number(process.env.PORT || 19324);
await createSqsServer({ port, hostname: "127.0.0.1", emulateQueueCreationLifecycle: false, validateDlqDestination: false });
console.log(`local-aws-sqs listening on http://127.0.0.1:${port}`);
