/* Runs SavedModel signatures through TensorFlow's C API, without Python.
 *
 * TensorFlow Serving loads an export with the C++ SavedModel loader; its C
 * entry point is TF_LoadSessionFromSavedModel (tag "serve"), which builds a
 * session from the MetaGraph and restores the variables. This client does the
 * same, then feeds and fetches tensors by the names in the SignatureDefs (the
 * caller reads them from saved_model.pb), like the model server does.
 *
 * Usage:
 *   savedmodel_client EXPORT_DIR RUN [-- RUN]...
 *   RUN:  [-e] (-i TENSOR SHAPE FILE)... (-o TENSOR FILE)...
 *
 *   TENSOR  a graph tensor name, "operation:index" (e.g. serving_default_x:0).
 *   SHAPE   comma-separated dimensions of the input (e.g. 7,64).
 *   FILE    for -i: the input as raw float32 values in native byte order,
 *           row-major, exactly prod(SHAPE) of them; for -o: where the output
 *           is written (see below).
 *
 * Each RUN is one TF_SessionRun in the session loaded once. An output file is
 * one text header line "DTYPE NDIMS D0 D1 ...\n" (DTYPE the TF_DataType
 * number: 1 float32, 9 int64) followed by the tensor's raw bytes.
 *
 * -e marks a request the model must refuse: its TF_SessionRun must fail, and
 * the client prints "== run N refused: code C\n" (N counts runs from 1, C
 * is the TF_Code: 3 for INVALID_ARGUMENT) and TensorFlow's status message on
 * a line of its own to stdout, writes no output file and goes on with the
 * next run.
 *
 * Exit status 0 on success; otherwise 1 with the problem (TensorFlow's status
 * message included) on stderr, and no output file of the failing run written
 * (a run with -e that is answered is such a failure).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"

#define MAX_TENSORS 64
#define MAX_DIMS 8

typedef struct {
  const char* name;
  int64_t dims[MAX_DIMS];
  int num_dims;
  const char* path;
} InputSpec;

typedef struct {
  const char* name;
  const char* path;
} OutputSpec;

static void Fail(const char* what, const char* detail) {
  fprintf(stderr, "savedmodel_client: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  exit(1);
}

static void CheckStatus(TF_Status* status, const char* what) {
  if (TF_GetCode(status) != TF_OK) Fail(what, TF_Message(status));
}

/* "7,64" -> dims {7, 64}. */
static int ParseShape(const char* text, int64_t* dims) {
  int n = 0;
  const char* p = text;
  while (*p) {
    char* end;
    long long value = strtoll(p, &end, 10);
    if (end == p || value < 0 || n == MAX_DIMS) Fail("bad SHAPE", text);
    dims[n++] = (int64_t)value;
    if (*end == ',') {
      ++end;
    } else if (*end) {
      Fail("bad SHAPE", text);
    }
    p = end;
  }
  return n;
}

/* "serving_default_x:0" -> the graph's TF_Output (operation, index). */
static TF_Output FindTensor(TF_Graph* graph, const char* name) {
  const char* colon = strrchr(name, ':');
  if (!colon || colon == name || !colon[1]) {
    Fail("tensor name is not operation:index", name);
  }
  char op_name[1024];
  size_t length = (size_t)(colon - name);
  if (length >= sizeof(op_name)) Fail("tensor name too long", name);
  memcpy(op_name, name, length);
  op_name[length] = '\0';
  TF_Output output;
  output.oper = TF_GraphOperationByName(graph, op_name);
  if (!output.oper) Fail("no such operation in the SavedModel graph", op_name);
  output.index = atoi(colon + 1);
  if (output.index < 0 || output.index >= TF_OperationNumOutputs(output.oper)) {
    Fail("no such output of the operation", name);
  }
  return output;
}

static void FreeBuffer(void* data, size_t length, void* unused) {
  (void)length;
  (void)unused;
  free(data);
}

/* Reads FILE as prod(dims) float32 values into a new tensor. */
static TF_Tensor* ReadInput(const InputSpec* spec) {
  size_t count = 1;
  for (int d = 0; d < spec->num_dims; ++d) count *= (size_t)spec->dims[d];
  size_t bytes = count * sizeof(float);
  FILE* file = fopen(spec->path, "rb");
  if (!file) Fail("cannot open input file", spec->path);
  void* data = malloc(bytes ? bytes : 1);
  size_t got = fread(data, 1, bytes, file);
  int extra = fgetc(file) != EOF;
  fclose(file);
  if (got != bytes || extra) {
    Fail("input file size does not match prod(SHAPE) float32 values",
         spec->path);
  }
  return TF_NewTensor(TF_FLOAT, spec->dims, spec->num_dims, data, bytes,
                      FreeBuffer, NULL);
}

static void WriteOutput(const char* path, const TF_Tensor* tensor) {
  FILE* file = fopen(path, "wb");
  if (!file) Fail("cannot write output file", path);
  int num_dims = TF_NumDims(tensor);
  fprintf(file, "%d %d", (int)TF_TensorType(tensor), num_dims);
  for (int d = 0; d < num_dims; ++d) {
    fprintf(file, " %lld", (long long)TF_Dim(tensor, d));
  }
  fputc('\n', file);
  size_t bytes = TF_TensorByteSize(tensor);
  if (fwrite(TF_TensorData(tensor), 1, bytes, file) != bytes) {
    Fail("short write", path);
  }
  if (fclose(file) != 0) Fail("cannot close output file", path);
}

/* Parses one RUN (number run_number) from argv[*next] up to "--" or the end;
 * runs it. */
static void Run(TF_Session* session, TF_Graph* graph, int argc, char** argv,
                int* next, int run_number) {
  InputSpec inputs[MAX_TENSORS];
  OutputSpec outputs[MAX_TENSORS];
  int num_inputs = 0, num_outputs = 0;
  int i = *next;
  int expect_refusal = i < argc && strcmp(argv[i], "-e") == 0;
  if (expect_refusal) ++i;
  for (; i < argc && strcmp(argv[i], "--") != 0;) {
    if (strcmp(argv[i], "-i") == 0 && i + 3 < argc) {
      if (num_inputs == MAX_TENSORS) Fail("too many inputs", NULL);
      InputSpec* spec = &inputs[num_inputs++];
      spec->name = argv[i + 1];
      spec->num_dims = ParseShape(argv[i + 2], spec->dims);
      spec->path = argv[i + 3];
      i += 4;
    } else if (strcmp(argv[i], "-o") == 0 && i + 2 < argc) {
      if (num_outputs == MAX_TENSORS) Fail("too many outputs", NULL);
      outputs[num_outputs].name = argv[i + 1];
      outputs[num_outputs].path = argv[i + 2];
      ++num_outputs;
      i += 3;
    } else {
      Fail("expected -i TENSOR SHAPE FILE or -o TENSOR FILE at", argv[i]);
    }
  }
  *next = i < argc ? i + 1 : i;
  if (num_outputs == 0) Fail("a run needs at least one -o", NULL);

  TF_Output feeds[MAX_TENSORS], fetches[MAX_TENSORS];
  TF_Tensor* feed_values[MAX_TENSORS];
  TF_Tensor* fetch_values[MAX_TENSORS] = {NULL};
  for (int k = 0; k < num_inputs; ++k) {
    feeds[k] = FindTensor(graph, inputs[k].name);
    feed_values[k] = ReadInput(&inputs[k]);
  }
  for (int k = 0; k < num_outputs; ++k) {
    fetches[k] = FindTensor(graph, outputs[k].name);
  }
  TF_Status* status = TF_NewStatus();
  TF_SessionRun(session, NULL, feeds, feed_values, num_inputs, fetches,
                fetch_values, num_outputs, NULL, 0, NULL, status);
  if (expect_refusal) {
    if (TF_GetCode(status) == TF_OK) {
      Fail("a request marked -e (to be refused) was answered", NULL);
    }
    printf("== run %d refused: code %d\n%s\n", run_number,
           (int)TF_GetCode(status), TF_Message(status));
    fflush(stdout);
    for (int k = 0; k < num_inputs; ++k) TF_DeleteTensor(feed_values[k]);
    TF_DeleteStatus(status);
    return;
  }
  CheckStatus(status, "TF_SessionRun failed");
  for (int k = 0; k < num_outputs; ++k) {
    WriteOutput(outputs[k].path, fetch_values[k]);
    TF_DeleteTensor(fetch_values[k]);
  }
  for (int k = 0; k < num_inputs; ++k) TF_DeleteTensor(feed_values[k]);
  TF_DeleteStatus(status);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: %s EXPORT_DIR [-e] (-i TENSOR SHAPE FILE)... "
            "(-o TENSOR FILE)... [-- RUN]...\n",
            argv[0]);
    return 2;
  }
  TF_Status* status = TF_NewStatus();
  TF_SessionOptions* options = TF_NewSessionOptions();
  TF_Graph* graph = TF_NewGraph();
  const char* tags[] = {"serve"};
  TF_Session* session = TF_LoadSessionFromSavedModel(
      options, NULL, argv[1], tags, 1, graph, NULL, status);
  CheckStatus(status, "TF_LoadSessionFromSavedModel failed");

  int next = 2;
  int run_number = 0;
  while (next < argc) Run(session, graph, argc, argv, &next, ++run_number);

  TF_CloseSession(session, status);
  CheckStatus(status, "TF_CloseSession failed");
  TF_DeleteSession(session, status);
  TF_DeleteGraph(graph);
  TF_DeleteSessionOptions(options);
  TF_DeleteStatus(status);
  return 0;
}
